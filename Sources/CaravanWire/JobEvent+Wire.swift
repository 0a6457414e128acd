import CaravanCore

// A job's events and status (CaravanCore's `JobEvent`, `JobStatus`) to and from `jobs.proto`.
// Reading checks what a client relies on: a parseable job id, token ids that fit `Int32`, a
// known finish reason and state; an unknown error code reads as `internal` (the message stays).

extension JobFinishReason {
    /// The wire value.
    public var wire: Caravan_V1_FinishReason {
        switch self {
        case .endOfSequence: .endOfSequence
        case .length: .length
        case .stopString: .stopString
        case .cancelled: .cancelled
        }
    }

    /// The reason of a wire value; nil for unspecified or unknown values.
    public init?(wire: Caravan_V1_FinishReason) {
        switch wire {
        case .endOfSequence: self = .endOfSequence
        case .length: self = .length
        case .stopString: self = .stopString
        case .cancelled: self = .cancelled
        case .unspecified, .UNRECOGNIZED: return nil
        }
    }
}

extension JobFailureReason {
    /// The wire value.
    public var wire: Caravan_V1_JobErrorCode {
        switch self {
        case .invalidRequest: .invalidRequest
        case .unavailable: .unavailable
        case .workerLost: .workerLost
        case .contextOverflow: .contextOverflow
        case .tooManyJobs: .tooManyJobs
        case .internal: .internal
        }
    }

    /// The reason of a wire value; unspecified and unknown codes read as ``internal``.
    public init(wire: Caravan_V1_JobErrorCode) {
        switch wire {
        case .invalidRequest: self = .invalidRequest
        case .unavailable: self = .unavailable
        case .workerLost: self = .workerLost
        case .contextOverflow: self = .contextOverflow
        case .tooManyJobs: self = .tooManyJobs
        case .internal, .unspecified, .UNRECOGNIZED: self = .internal
        }
    }
}

extension JobState {
    /// The wire value.
    public var wire: Caravan_V1_JobState {
        switch self {
        case .queued: .queued
        case .prefill: .prefill
        case .generating: .generating
        case .finished: .finished
        case .cancelled: .cancelled
        case .failed: .failed
        }
    }

    /// The state of a wire value; nil for unspecified or unknown values.
    public init?(wire: Caravan_V1_JobState) {
        switch wire {
        case .queued: self = .queued
        case .prefill: self = .prefill
        case .generating: self = .generating
        case .finished: self = .finished
        case .cancelled: self = .cancelled
        case .failed: self = .failed
        case .unspecified, .UNRECOGNIZED: return nil
        }
    }
}

extension JobID {
    /// The id in a wire field named `field`; throws when it is not a job id.
    public init(wire text: String, field: String) throws(WireError) {
        guard let id = JobID(text) else {
            throw .invalidField(field, reason: "not a job id (job- and 1...\(JobID.maxSuffixLength) letters or digits)")
        }
        self = id
    }
}

extension JobFailure {
    /// The wire message.
    public var wire: Caravan_V1_JobError {
        var e = Caravan_V1_JobError()
        e.code = reason.wire
        e.message = message
        return e
    }

    /// The failure of a wire message.
    public init(wire e: Caravan_V1_JobError) {
        self.init(JobFailureReason(wire: e.code), e.message)
    }
}

extension Caravan_V1_JobEvent {
    /// The wire message of `event` for job `job` (the coordinator's id; an accepted event's own
    /// id wins), numbered `sequence`.
    public init(_ event: JobEvent, job: JobID, clientRequestID: String, sequence: UInt64) {
        self.init()
        jobID = job.rawValue
        self.clientRequestID = clientRequestID
        self.sequence = sequence
        switch event {
        case let .accepted(accepted, promptTokens, queuePosition):
            jobID = accepted.rawValue
            var a = Caravan_V1_JobAccepted()
            a.promptTokens = UInt32(clamping: promptTokens)
            a.queuePosition = UInt32(clamping: queuePosition)
            self.event = .accepted(a)
        case .token(let token):
            var t = Caravan_V1_JobToken()
            t.tokenID = UInt32(bitPattern: token.id)
            t.text = token.text
            if let logprob = token.logprob { t.logprob = logprob }
            t.topLogprobs = token.alternatives.map { alt in
                var w = Caravan_V1_JobTokenAlternative()
                w.tokenID = UInt32(bitPattern: alt.id)
                w.text = alt.text
                w.logprob = alt.logprob
                return w
            }
            self.event = .token(t)
        case .finished(let finish):
            var f = Caravan_V1_JobFinished()
            f.reason = finish.reason.wire
            f.text = finish.text
            f.promptTokens = UInt32(clamping: finish.promptTokens)
            f.completionTokens = UInt32(clamping: finish.completionTokens)
            f.timeToFirstTokenMs = UInt32(clamping: finish.timeToFirstToken.wholeMilliseconds)
            f.totalMs = UInt32(clamping: finish.total.wholeMilliseconds)
            self.event = .finished(f)
        case .failed(let failure):
            self.event = .error(failure.wire)
        }
    }
}

extension JobEvent {
    /// The event a wire message carries; throws when it has none, its job id is not one (for an
    /// accepted event), a token id does not fit `Int32`, or a finish has no known reason.
    public init(wire e: Caravan_V1_JobEvent) throws(WireError) {
        switch e.event {
        case .accepted(let a)?:
            self = .accepted(job: try JobID(wire: e.jobID, field: "job_event.job_id"),
                             promptTokens: Int(a.promptTokens), queuePosition: Int(a.queuePosition))
        case .token(let t)?:
            guard let id = Int32(exactly: t.tokenID) else {
                throw .invalidField("job_event.token.token_id", reason: "\(t.tokenID) is not a token id")
            }
            var alternatives: [JobToken.Alternative] = []
            alternatives.reserveCapacity(t.topLogprobs.count)
            for (i, alt) in t.topLogprobs.enumerated() {
                guard let altID = Int32(exactly: alt.tokenID) else {
                    throw .invalidField("job_event.token.top_logprobs[\(i)].token_id", reason: "\(alt.tokenID) is not a token id")
                }
                alternatives.append(JobToken.Alternative(id: altID, text: alt.text, logprob: alt.logprob))
            }
            self = .token(JobToken(id: id, text: t.text, logprob: t.hasLogprob ? t.logprob : nil, alternatives: alternatives))
        case .finished(let f)?:
            guard let reason = JobFinishReason(wire: f.reason) else {
                throw .invalidField("job_event.finished.reason", reason: "unspecified or unknown (\(f.reason.rawValue))")
            }
            self = .finished(JobFinish(reason: reason, text: f.text, promptTokens: Int(f.promptTokens),
                                       completionTokens: Int(f.completionTokens),
                                       timeToFirstToken: .milliseconds(f.timeToFirstTokenMs), total: .milliseconds(f.totalMs)))
        case .error(let err)?:
            self = .failed(JobFailure(wire: err))
        case nil:
            throw .missingField("job_event.event")
        }
    }
}

extension Caravan_V1_JobStatus {
    /// The wire message of `status`.
    public init(_ status: JobStatus) {
        self.init()
        jobID = status.job.rawValue
        state = status.state.wire
        promptTokens = UInt32(clamping: status.promptTokens)
        completionTokens = UInt32(clamping: status.completionTokens)
        submittedUnixMs = status.submittedUnixMs
        planEpoch = status.planEpoch
        if let failure = status.failure { error = failure.wire }
        waitingReason = status.waitingReason
        replays = UInt32(clamping: status.replays)
        queuePosition = UInt32(clamping: status.queuePosition)
    }
}

extension JobStatus {
    /// The status a wire message carries; throws when its job id is not one or its state is
    /// unspecified or unknown.
    public init(wire s: Caravan_V1_JobStatus) throws(WireError) {
        guard let state = JobState(wire: s.state) else {
            throw .invalidField("job_status.state", reason: "unspecified or unknown (\(s.state.rawValue))")
        }
        self.init(job: try JobID(wire: s.jobID, field: "job_status.job_id"), state: state,
                  promptTokens: Int(s.promptTokens), completionTokens: Int(s.completionTokens),
                  submittedUnixMs: s.submittedUnixMs, planEpoch: s.planEpoch,
                  failure: s.hasError ? JobFailure(wire: s.error) : nil, waitingReason: s.waitingReason,
                  replays: Int(s.replays), queuePosition: Int(s.queuePosition))
    }
}
