import CaravanWire

extension Caravan_V1_SamplingParameters {
    /// Greedy sampling (temperature 0) of `tokens` tokens at most.
    static func greedy(_ tokens: Int) -> Caravan_V1_SamplingParameters {
        var s = Caravan_V1_SamplingParameters()
        s.temperature = 0
        s.maxTokens = UInt32(tokens)
        return s
    }

    /// The seeded sampling the fault tests replay: `temperature`, top-k 40, `seed`, `tokens` at most.
    static func seeded(_ temperature: Float, seed: UInt64, tokens: UInt32) -> Caravan_V1_SamplingParameters {
        var s = Caravan_V1_SamplingParameters()
        s.temperature = temperature
        s.seed = seed
        s.topK = 40
        s.maxTokens = tokens
        return s
    }
}
