/// Parameters of the sampling chain and of generation limits.
///
/// Defaults follow llama.cpp's command-line tool: temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05, repeat penalty 1.0 (off) over the last 64 tokens, no frequency/presence penalty.
/// When decoding from JSON, missing keys take their default values.
///
/// Defined in CaravanCore so that a ``SamplingRequest`` (which `Llama` carries and `Sampling` runs)
/// can hold the same chain; `Sampling` adds `validate()`.
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// Softmax temperature. `0` selects greedy decoding (argmax, lowest id on ties).
    public var temperature: Float
    /// Keep only the `topK` most likely tokens. `0` disables the stage.
    public var topK: Int
    /// Nucleus sampling: keep the smallest prefix of the sorted tokens whose probability mass
    /// reaches `topP`. `1` disables the stage.
    public var topP: Float
    /// Drop tokens whose probability is below `minP` times the probability of the best token.
    /// `0` disables the stage.
    public var minP: Float
    /// Multiplicative penalty for tokens seen in the penalty window (`1` = off).
    public var repeatPenalty: Float
    /// Size of the penalty window in tokens: `0` disables penalties, `-1` uses the whole history.
    public var repeatLastN: Int
    /// Subtracted from a token's logit once per occurrence in the penalty window (`0` = off).
    public var frequencyPenalty: Float
    /// Subtracted once from the logit of every token present in the penalty window (`0` = off).
    public var presencePenalty: Float
    /// Seed of the counter-based random draw; together with the token position it fully
    /// determines every draw.
    public var seed: UInt64
    /// Maximum number of tokens to generate (at least 1).
    public var maxTokens: Int
    /// Stop strings: generation ends when the output contains one of them; the stop string
    /// itself is not emitted.
    public var stop: [String]
    /// Report the log-probability of each sampled token (under the model's raw distribution:
    /// softmax of the logits before temperature, penalties and truncation, as vLLM and OpenAI do).
    public var logprobs = false
    /// Also report this many most likely alternatives per token (0...20; implies `logprobs`).
    public var topLogprobs = 0

    /// Creates parameters; every argument defaults to llama.cpp's CLI default.
    public init(
        temperature: Float = 0.8,
        topK: Int = 40,
        topP: Float = 0.95,
        minP: Float = 0.05,
        repeatPenalty: Float = 1.0,
        repeatLastN: Int = 64,
        frequencyPenalty: Float = 0,
        presencePenalty: Float = 0,
        seed: UInt64 = 0,
        maxTokens: Int = 512,
        stop: [String] = []
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.repeatLastN = repeatLastN
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
        self.seed = seed
        self.maxTokens = maxTokens
        self.stop = stop
    }

    /// Parameters for greedy decoding (temperature 0, no penalties).
    public static var greedy: SamplingParameters { SamplingParameters(temperature: 0) }

    /// Whether these parameters select greedy decoding.
    public var isGreedy: Bool { temperature == 0 }

    private enum CodingKeys: String, CodingKey {
        case temperature, topK, topP, minP, repeatPenalty, repeatLastN
        case frequencyPenalty, presencePenalty, seed, maxTokens, stop, logprobs, topLogprobs
    }

    /// Decodes parameters; absent keys keep their defaults. Values are not validated here:
    /// call `validate()` (in `Sampling`).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SamplingParameters()
        temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? d.temperature
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? d.topK
        topP = try c.decodeIfPresent(Float.self, forKey: .topP) ?? d.topP
        minP = try c.decodeIfPresent(Float.self, forKey: .minP) ?? d.minP
        repeatPenalty = try c.decodeIfPresent(Float.self, forKey: .repeatPenalty) ?? d.repeatPenalty
        repeatLastN = try c.decodeIfPresent(Int.self, forKey: .repeatLastN) ?? d.repeatLastN
        frequencyPenalty = try c.decodeIfPresent(Float.self, forKey: .frequencyPenalty) ?? d.frequencyPenalty
        presencePenalty = try c.decodeIfPresent(Float.self, forKey: .presencePenalty) ?? d.presencePenalty
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        maxTokens = try c.decodeIfPresent(Int.self, forKey: .maxTokens) ?? d.maxTokens
        stop = try c.decodeIfPresent([String].self, forKey: .stop) ?? d.stop
        logprobs = try c.decodeIfPresent(Bool.self, forKey: .logprobs) ?? false
        topLogprobs = try c.decodeIfPresent(Int.self, forKey: .topLogprobs) ?? 0
    }
}
