import CaravanCore

/// A sampling chain in llama.cpp's default order, reproducible from `(seed, position)`.
///
/// Stages: penalties (over the last `repeatLastN` tokens of the history) -> top-k -> top-p ->
/// min-p -> temperature -> random draw. With temperature 0 the chain is greedy: the argmax of the
/// penalized logits, lowest id on ties. The random draw uses `CounterRandom.uniform(seed:position:)`,
/// so a sampler has no hidden state: any instance with the same parameters picks the same token
/// for the same logits, history and position.
public struct Sampler: Sendable {
    /// The (validated) parameters.
    public let parameters: SamplingParameters
    /// Reused scratch storage (makes `sample` mutating; it carries no randomness state).
    private var candidates = TokenCandidates()

    /// Creates a sampler; throws if the parameters are invalid.
    public init(parameters: SamplingParameters) throws(SamplingError) {
        try parameters.validate()
        self.parameters = parameters
    }

    /// Samples the next token. `logits` is modified in place (penalties are applied to it).
    /// `position` is the index of the token being generated in the job's sequence; it selects the
    /// random draw. Precondition: `logits` is not empty.
    public mutating func sample(logits: UnsafeMutableBufferPointer<Float>, history: [Int32], position: Int) -> Int32 {
        precondition(!logits.isEmpty, "cannot sample from an empty vocabulary")
        let p = parameters
        Penalties.apply(to: logits, history: history, lastN: p.repeatLastN, repeatPenalty: p.repeatPenalty,
                        frequencyPenalty: p.frequencyPenalty, presencePenalty: p.presencePenalty)
        if p.isGreedy {
            return Sampler.argmax(UnsafeBufferPointer(logits))
        }
        runFilters(UnsafeBufferPointer(logits))
        let u = CounterRandom.uniform(seed: p.seed, position: position)
        return candidates.draw(uniform: u) ?? Sampler.argmax(UnsafeBufferPointer(logits))
    }

    /// Array convenience for `sample(logits:history:position:)`; the array is not modified.
    public mutating func sample(logits: [Float], history: [Int32], position: Int) -> Int32 {
        var copy = logits
        return copy.withUnsafeMutableBufferPointer { sample(logits: $0, history: history, position: position) }
    }

    /// The distribution the draw would use: surviving token ids with their probabilities (after
    /// penalties, filters and temperature), in draw order. Greedy parameters give the argmax with
    /// probability 1.
    public mutating func distribution(logits: [Float], history: [Int32]) -> [(id: Int32, probability: Float)] {
        precondition(!logits.isEmpty, "cannot sample from an empty vocabulary")
        var copy = logits
        let p = parameters
        return copy.withUnsafeMutableBufferPointer { buffer in
            Penalties.apply(to: buffer, history: history, lastN: p.repeatLastN, repeatPenalty: p.repeatPenalty,
                            frequencyPenalty: p.frequencyPenalty, presencePenalty: p.presencePenalty)
            if p.isGreedy { return [(Sampler.argmax(UnsafeBufferPointer(buffer)), 1)] }
            runFilters(UnsafeBufferPointer(buffer))
            return Array(zip(candidates.ids, candidates.probabilities())).map { (id: $0.0, probability: $0.1) }
        }
    }

    /// Top-k, top-p, min-p and temperature into `candidates`.
    private mutating func runFilters(_ logits: UnsafeBufferPointer<Float>) {
        let p = parameters
        if p.topK > 0 {
            candidates.reset(topK: p.topK, of: logits)
        } else {
            candidates.reset(allOf: logits)
        }
        candidates.keepTopP(p.topP)
        candidates.keepMinP(p.minP)
        candidates.applyTemperature(p.temperature)
    }

    /// Index of the largest value; the lowest index wins ties. NaN values are never chosen
    /// unless every value is NaN (then 0).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        var found = false
        for i in 0..<logits.count {
            let v = logits[i]
            if v.isNaN { continue }
            if !found || v > bestValue {
                best = i
                bestValue = v
                found = true
            }
        }
        return Int32(best)
    }
}
