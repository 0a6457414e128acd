/// One turn of a chat conversation.
public struct ChatTurn: Sendable, Equatable {
    /// "system", "user" or "assistant" (rendered with the model's chat template).
    public var role: String
    /// The turn's text.
    public var content: String

    /// Creates a turn.
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// What a job continues.
public enum JobInput: Sendable, Equatable {
    /// Raw prompt text (tokenized by the coordinator, special tokens parsed).
    case prompt(String)
    /// A chat conversation, oldest turn first, rendered with the model's chat template.
    case chat([ChatTurn])
    /// Already tokenized input (token ids of the cluster's model), used as is.
    case tokens([Int32])
}

/// A job as a client asks for it: the input, how to sample, and when to stop.
///
/// The generation limits that a job may leave to the coordinator are optional here (``maxTokens``,
/// ``seed``); everything else about sampling is in ``sampling``.
public struct JobRequest: Sendable, Equatable {
    /// The input to continue.
    public var input: JobInput
    /// The client's own name for the job, echoed in its events (may be empty).
    public var clientRequestID: String
    /// Model name or SHA-256 to use; nil = the cluster's current model.
    public var model: String?
    /// The sampling chain (temperature, top-k, top-p, min-p), the penalties and their window, the
    /// stop strings and the log-probabilities to report. Its `maxTokens` and `seed` are not read:
    /// ``maxTokens`` and ``seed`` say them, since a job may leave either to the coordinator.
    public var sampling: SamplingParameters
    /// Most tokens to generate; nil = up to the model's context limit.
    public var maxTokens: Int?
    /// The seed of the random draws (the same seed gives the same output); nil = the coordinator
    /// draws one.
    public var seed: UInt64?

    /// Creates a request. `sampling`'s `maxTokens` and `seed` are reset to their defaults (they are
    /// not read; ``maxTokens`` and ``seed`` say them).
    public init(input: JobInput, clientRequestID: String = "", model: String? = nil,
                sampling: SamplingParameters = SamplingParameters(), maxTokens: Int? = nil, seed: UInt64? = nil) {
        self.input = input
        self.clientRequestID = clientRequestID
        self.model = model
        self.sampling = Self.chain(of: sampling)
        self.maxTokens = maxTokens
        self.seed = seed
    }

    /// `sampling` with `maxTokens` and `seed` reset to their defaults: the sampling chain alone,
    /// as a request (and a journaled submission) keeps it beside its own token limit and seed.
    public static func chain(of sampling: SamplingParameters) -> SamplingParameters {
        var chain = sampling
        let defaults = SamplingParameters()
        chain.maxTokens = defaults.maxTokens
        chain.seed = defaults.seed
        return chain
    }

    /// The parameters a generation of this request runs with: its chain, at most ``maxTokens``
    /// tokens (nil: `contextLimit`), drawing with ``seed`` (nil: `drawnSeed`, which the coordinator
    /// draws once and keeps, so that a replay draws the same numbers).
    public func parameters(contextLimit: Int, drawnSeed: UInt64) -> SamplingParameters {
        var p = sampling
        p.seed = seed ?? drawnSeed
        p.maxTokens = maxTokens ?? contextLimit
        return p
    }
}
