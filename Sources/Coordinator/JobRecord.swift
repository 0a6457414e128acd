import CaravanCore
import Inference

/// One job's bookkeeping in the ``JobTable``. A job outlives pipelines: while no pipeline can take
/// it (start-up, re-plan, not enough workers) its session is parked here; on the next pipeline it
/// is replayed.
struct JobRecord: Sendable {
    let jobID: JobID
    let clientRequestID: String
    let sequence: SequenceID
    let promptTokens: Int
    let submittedMs: UInt64
    /// The CURVE key of the client that submitted it ("" in plain mode): only that key (and
    /// admins) may read, cancel or attach to it.
    var owner = ""
    /// KV positions per stage the job reserves while it runs (``KVAdmission``).
    var kvCost = 0
    /// Where events go (nil after a coordinator restart until a client attaches).
    var peer: PeerID?
    var state: JobState
    /// The plan epoch of the pipeline running it (0 = never ran).
    var epoch: UInt64 = 0
    /// Generated token ids and the text streamed with each.
    var tokenIDs: [Int32] = []
    var texts: [String] = []
    let started: ContinuousClock.Instant
    var firstToken: ContinuousClock.Instant?
    /// When its latest token came (for the per-token latency metric).
    var lastToken: ContinuousClock.Instant?
    /// Events numbered so far (the number of the last one sent).
    var eventSequence: UInt64 = 0
    /// Why it failed, once it did.
    var error: String?
    /// The lane running it, when running.
    var lane: Int?
    /// The session, while waiting for a pipeline.
    var parked: GenerationSession?
    /// The session, wherever it runs (for the logprobs it records).
    var session: GenerationSession?
    var waitingSince: ContinuousClock.Instant?
    var waitingReason = ""
    /// Times the job moved to a new pipeline after having started.
    var replays = 0
    /// Positions of its sequence every stage computed (as far as the desk saw results): what a
    /// re-plan lets the stages keep (``StageAssignment/continuing``).
    var committed = 0
    /// Pipeline failures since the job last generated a token.
    var failuresWithoutProgress = 0
    /// Since when the job has made no progress while pipelines failed or were replaced (nil while
    /// it generates); the queue timeout counts from here.
    var stalledSince: ContinuousClock.Instant?
    /// The final event (finished or failed) once the job ended.
    var endEvent: JobEvent?
    /// A client asked to cancel it: whoever holds its session next (a lane, the desk after a hand
    /// back or a dispatch) ends it as cancelled instead of running it on.
    var cancelRequested = false

    var isEnded: Bool { endEvent != nil }

    /// Its status as reported (a parked job is queued, whatever it did before); no queue position.
    var status: JobStatus {
        JobStatus(job: jobID, state: parked != nil && !isEnded ? .queued : state, promptTokens: promptTokens,
                  completionTokens: tokenIDs.count, submittedUnixMs: submittedMs, planEpoch: epoch,
                  failure: error.map { JobFailure(.internal, $0) }, waitingReason: parked != nil ? waitingReason : "",
                  replays: replays)
    }
}

/// One event for a job's client, numbered in the job's stream (the ``JobTable``'s outbox).
struct JobEventMessage: Sendable, Equatable {
    /// The client link it goes to.
    let peer: PeerID
    let job: JobID
    /// The client's name for the job, echoed.
    let clientRequestID: String
    /// 1 for the job's first event, then counting up.
    let sequence: UInt64
    let event: JobEvent
}

extension JobFinishReason {
    /// How a job reports a session's finish (a full context reads as length).
    init(_ reason: FinishReason) {
        switch reason {
        case .length, .contextFull: self = .length
        case .stop: self = .stopString
        case .endOfGeneration: self = .endOfSequence
        case .cancelled: self = .cancelled
        }
    }
}

extension JobOutcome {
    /// The outcome an ending event records; nil for an event that does not end a job.
    init?(ending event: JobEvent) {
        switch event {
        case .finished(let f): self = .finished(f.reason, text: f.text)
        case .failed(let f): self = .failed(message: f.message)
        case .accepted, .token: return nil
        }
    }
}
