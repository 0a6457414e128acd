/// Why a job ended normally.
public enum JobFinishReason: Sendable, Equatable, CaseIterable {
    /// The model produced an end-of-sequence token.
    case endOfSequence
    /// The job's `maxTokens` or the context limit was reached.
    case length
    /// A stop string matched.
    case stopString
    /// The client (or an operator) cancelled the job.
    case cancelled
}

/// Why a job failed or was refused.
public enum JobFailureReason: Sendable, Equatable, CaseIterable {
    /// The request was invalid (empty prompt, bad sampling parameters, unknown model, ...).
    case invalidRequest
    /// No plan can serve the job right now (no workers, not enough memory, the coordinator busy).
    case unavailable
    /// A worker of the pipeline was lost and the job could not be resumed.
    case workerLost
    /// The prompt does not fit in the context.
    case contextOverflow
    /// The client holds its limit of running and queued jobs.
    case tooManyJobs
    /// Anything else (the message says what).
    case `internal`
}

/// A generated token as its job's stream reports it.
public struct JobToken: Sendable, Equatable {
    /// A likely token with its text and log-probability.
    public struct Alternative: Sendable, Equatable {
        /// Token id.
        public var id: Int32
        /// The token's text.
        public var text: String
        /// Its log-probability.
        public var logprob: Float

        /// Creates an alternative.
        public init(id: Int32, text: String, logprob: Float) {
            self.id = id
            self.text = text
            self.logprob = logprob
        }
    }

    /// The token id.
    public var id: Int32
    /// The text that became safe to show (may be empty: a stop string may be starting, or a UTF-8
    /// sequence is incomplete).
    public var text: String
    /// Its log-probability, when the job asked for it.
    public var logprob: Float?
    /// The most likely alternatives, most likely first, when the job asked for them.
    public var alternatives: [Alternative]

    /// Creates a token.
    public init(id: Int32, text: String, logprob: Float? = nil, alternatives: [Alternative] = []) {
        self.id = id
        self.text = text
        self.logprob = logprob
        self.alternatives = alternatives
    }
}

/// The end of a job that finished normally (or was cancelled).
public struct JobFinish: Sendable, Equatable {
    /// Why it ended.
    public var reason: JobFinishReason
    /// The last text to show, held back until the end; may be empty.
    public var text: String
    /// Tokens in the rendered prompt.
    public var promptTokens: Int
    /// Tokens generated.
    public var completionTokens: Int
    /// Time from submission to the first token (zero when unknown, e.g. after a coordinator restart).
    public var timeToFirstToken: Duration
    /// Time from submission to the end (zero when unknown).
    public var total: Duration

    /// Creates an end.
    public init(reason: JobFinishReason, text: String = "", promptTokens: Int = 0, completionTokens: Int = 0,
                timeToFirstToken: Duration = .zero, total: Duration = .zero) {
        self.reason = reason
        self.text = text
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.timeToFirstToken = timeToFirstToken
        self.total = total
    }
}

/// Why a job failed, with the coordinator's explanation.
public struct JobFailure: Sendable, Equatable, Error, CustomStringConvertible {
    /// The kind of failure.
    public var reason: JobFailureReason
    /// A human readable explanation.
    public var message: String

    /// Creates a failure.
    public init(_ reason: JobFailureReason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { "\(reason): \(message)" }
}

/// One event of a job's stream: accepted, then tokens, then exactly one `finished` or `failed`.
public enum JobEvent: Sendable, Equatable {
    /// The coordinator queued the job as `job`; `promptTokens` is the rendered prompt's length,
    /// `queuePosition` the jobs ahead of it.
    case accepted(job: JobID, promptTokens: Int, queuePosition: Int)
    /// A generated token.
    case token(JobToken)
    /// The job ended normally.
    case finished(JobFinish)
    /// The job failed or was refused.
    case failed(JobFailure)

    /// Whether this event ends the stream.
    public var isEnd: Bool {
        switch self {
        case .finished, .failed: true
        case .accepted, .token: false
        }
    }
}

/// Where a job is in its life.
public enum JobState: Sendable, Equatable, CaseIterable {
    /// Waiting for a pipeline, for KV room, or for its turn.
    case queued
    /// Processing the prompt.
    case prefill
    /// Generating tokens.
    case generating
    /// Ended normally.
    case finished
    /// Cancelled by the client or an operator.
    case cancelled
    /// Failed.
    case failed

    /// Whether the job has ended.
    public var isEnded: Bool { self == .finished || self == .cancelled || self == .failed }
}

/// A job's state as the coordinator reports it.
public struct JobStatus: Sendable, Equatable {
    /// The job.
    public var job: JobID
    /// Where it is.
    public var state: JobState
    /// Tokens in the rendered prompt.
    public var promptTokens: Int
    /// Tokens generated so far.
    public var completionTokens: Int
    /// Submission time, Unix milliseconds.
    public var submittedUnixMs: UInt64
    /// The plan epoch the job runs under (0 while queued).
    public var planEpoch: UInt64
    /// Why it failed (state ``JobState/failed``).
    public var failure: JobFailure?
    /// While queued: why it waits (empty otherwise).
    public var waitingReason: String
    /// Times the job was moved to a new pipeline and replayed.
    public var replays: Int
    /// While queued for KV room: 1 = the next job to start; 0 = not in that queue.
    public var queuePosition: Int

    /// Creates a status.
    public init(job: JobID, state: JobState, promptTokens: Int = 0, completionTokens: Int = 0, submittedUnixMs: UInt64 = 0,
                planEpoch: UInt64 = 0, failure: JobFailure? = nil, waitingReason: String = "", replays: Int = 0,
                queuePosition: Int = 0) {
        self.job = job
        self.state = state
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.submittedUnixMs = submittedUnixMs
        self.planEpoch = planEpoch
        self.failure = failure
        self.waitingReason = waitingReason
        self.replays = replays
        self.queuePosition = queuePosition
    }
}
