import CaravanCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

// Sampling one row wherever its logits are: in the coordinator's session, or on the last pipeline
// stage from a `SamplingRequest` (so only the token id travels back). Both go through
// `Sampler.sampleRow`, so they pick the same token and report the same numbers.

extension SamplingParameters {
    /// The request a stage needs to sample the token that follows `tokens` (the whole sequence so
    /// far): these parameters, generation limits (`maxTokens`, `stop`) reset to their defaults (they
    /// are the coordinator's business), and only the penalty window of `tokens`.
    public func stageRequest(after tokens: some BidirectionalCollection<Int32>) -> SamplingRequest {
        var chain = self
        chain.maxTokens = SamplingParameters().maxTokens
        chain.stop = []
        return SamplingRequest(parameters: chain,
                               history: Penalties.window(of: tokens, lastN: repeatLastN, repeatPenalty: repeatPenalty,
                                                         frequencyPenalty: frequencyPenalty, presencePenalty: presencePenalty))
    }
}

extension Penalties {
    /// The part of `history` that `apply(to:history:lastN:...)` reads with these settings: the
    /// last `lastN` tokens (all for `-1`), or nothing when `lastN == 0` or no penalty is active.
    /// Applying the penalties with the window instead of the whole history gives the same logits.
    public static func window(
        of history: some BidirectionalCollection<Int32>,
        lastN: Int,
        repeatPenalty: Float,
        frequencyPenalty: Float,
        presencePenalty: Float
    ) -> [Int32] {
        guard lastN != 0 else { return [] }
        guard repeatPenalty != 1 || frequencyPenalty != 0 || presencePenalty != 0 else { return [] }
        return lastN < 0 ? Array(history) : Array(history.suffix(lastN))
    }
}

extension Sampler {
    /// A sampler for a stage request; throws if its parameters are invalid.
    public init(request: SamplingRequest) throws(SamplingError) {
        try self.init(parameters: request.parameters)
    }

    /// Samples the token at `position` from one row of raw logits (modified in place: penalties
    /// are applied to it), with the log-probabilities the parameters ask for, computed from the
    /// logits before any change (see ``RawLogprobs``). `history` is the penalty window (or more of
    /// the sequence: only the window is read).
    public mutating func sampleRow(logits: UnsafeMutableBufferPointer<Float>, history: [Int32], position: Int) -> SampledRow {
        let wantsLogprobs = parameters.logprobs || parameters.topLogprobs > 0
        let raw: [Float] = wantsLogprobs ? Array(logits) : []
        let token = sample(logits: logits, history: history, position: position)
        guard wantsLogprobs else { return SampledRow(token: token) }
        let record = raw.withUnsafeBufferPointer { RawLogprobs.of($0, chosen: token, top: parameters.topLogprobs) }
        return SampledRow(token: token, logprobs: record)
    }
}

/// Log-probabilities under the model's raw distribution (softmax of the logits before penalties,
/// truncation and temperature, as vLLM and OpenAI report them).
public enum RawLogprobs {
    /// Log-softmax of `logits` at `chosen` (`-inf` when outside the vocabulary), and the `top`
    /// most likely tokens, most likely first (the lower id first among equals).
    public static func of(_ logits: UnsafeBufferPointer<Float>, chosen: Int32, top: Int) -> SampledLogprobs {
        var maximum = -Float.infinity
        for v in logits where v > maximum { maximum = v }
        var sum = 0.0
        for v in logits { sum += Double(expf(v - maximum)) }
        let lse = maximum + Float(log(sum))
        var best: [SampledAlternative] = []
        if top > 0 {
            // Keep the `top` largest in a small sorted array (top <= 20).
            for (i, v) in logits.enumerated() where best.count < top || v > best[best.count - 1].logprob {
                let entry = SampledAlternative(id: Int32(i), logprob: v)
                let at = best.firstIndex { $0.logprob < v } ?? best.count
                best.insert(entry, at: at)
                if best.count > top { best.removeLast() }
            }
            best = best.map { SampledAlternative(id: $0.id, logprob: $0.logprob - lse) }
        }
        let index = Int(chosen)
        let value = index >= 0 && index < logits.count ? logits[index] - lse : -.infinity
        return SampledLogprobs(logprob: value, top: best)
    }
}
