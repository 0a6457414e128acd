/// What the last pipeline stage needs to sample a row's next token itself, instead of returning
/// the row's logits: the job's sampling chain and the part of the sequence its penalties read.
///
/// Defined here, below both `Llama` (whose `StageEntry` carries it) and `Sampling` (which runs it),
/// so neither depends on the other. The draw is for the token at the row's position + 1 (the
/// token the row's logits predict); it is a pure function of (`seed`, that position), so any
/// process holding the same logits picks the same token.
public struct SamplingRequest: Sendable, Equatable {
    /// The job's sampling chain, its seed already resolved (never "pick one at random"), and which
    /// log-probabilities to report. Generation limits (`maxTokens`, `stop`) are the coordinator's
    /// business: they do not travel on the wire, a stage ignores them, and a request made by
    /// `stageRequest(after:)` or read from the wire carries their defaults.
    public var parameters: SamplingParameters
    /// The newest tokens of the sequence that the penalty stage reads, oldest first: the last
    /// `repeatLastN` tokens (all of them for `-1`), and none when no penalty is active.
    public var history: [Int32]

    /// Creates a request.
    public init(parameters: SamplingParameters, history: [Int32]) {
        self.parameters = parameters
        self.history = history
    }

    /// Whether the result must carry log-probabilities.
    public var wantsLogprobs: Bool { parameters.logprobs || parameters.topLogprobs > 0 }
}

/// The token a stage sampled for one row, with its log-probabilities when they were asked for.
public struct SampledRow: Sendable, Equatable {
    /// The sampled token id.
    public var token: Int32
    /// Log-probabilities under the raw distribution (softmax of the unmodified logits); nil when
    /// the request did not ask for them.
    public var logprobs: SampledLogprobs?

    /// Creates a result.
    public init(token: Int32, logprobs: SampledLogprobs? = nil) {
        self.token = token
        self.logprobs = logprobs
    }
}

/// Log-probabilities reported with a sampled token.
public struct SampledLogprobs: Sendable, Equatable {
    /// Log-probability of the sampled token.
    public var logprob: Float
    /// The most likely tokens (id, log-probability), most likely first.
    public var top: [SampledAlternative]

    /// Creates a record.
    public init(logprob: Float, top: [SampledAlternative]) {
        self.logprob = logprob
        self.top = top
    }
}

/// A likely token and its log-probability.
public struct SampledAlternative: Sendable, Equatable {
    /// Token id.
    public var id: Int32
    /// Its log-probability.
    public var logprob: Float

    /// Creates an alternative.
    public init(id: Int32, logprob: Float) {
        self.id = id
        self.logprob = logprob
    }
}
