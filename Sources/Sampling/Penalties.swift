/// The penalty stage (repeat, frequency and presence penalties), applied in place to raw logits.
public enum Penalties {
    /// Penalizes tokens that occur in the last `lastN` entries of `history`, as llama.cpp does:
    /// for each such token seen `count` times, a positive logit is divided by `repeatPenalty`
    /// (a non-positive one multiplied by it), then `count * frequencyPenalty + presencePenalty`
    /// is subtracted. `lastN == 0` disables the stage, `lastN == -1` uses the whole history.
    /// History entries outside `0..<logits.count` are ignored. Cost is O(window), not O(vocab).
    public static func apply(
        to logits: UnsafeMutableBufferPointer<Float>,
        history: some BidirectionalCollection<Int32>,
        lastN: Int,
        repeatPenalty: Float,
        frequencyPenalty: Float,
        presencePenalty: Float
    ) {
        guard lastN != 0, !history.isEmpty else { return }
        guard repeatPenalty != 1 || frequencyPenalty != 0 || presencePenalty != 0 else { return }
        let window = lastN < 0 ? history.count : min(lastN, history.count)
        var counts: [Int32: Int] = [:]
        counts.reserveCapacity(window)
        for token in history.suffix(window) where token >= 0 && Int(token) < logits.count {
            counts[token, default: 0] += 1
        }
        for (token, count) in counts {
            let i = Int(token)
            var logit = logits[i]
            if logit <= 0 { logit *= repeatPenalty } else { logit /= repeatPenalty }
            logit -= Float(count) * frequencyPenalty + presencePenalty
            logits[i] = logit
        }
    }

    /// Array convenience for `apply(to:history:lastN:repeatPenalty:frequencyPenalty:presencePenalty:)`.
    public static func apply(
        to logits: inout [Float],
        history: [Int32],
        lastN: Int,
        repeatPenalty: Float,
        frequencyPenalty: Float,
        presencePenalty: Float
    ) {
        logits.withUnsafeMutableBufferPointer { buffer in
            apply(to: buffer, history: history, lastN: lastN, repeatPenalty: repeatPenalty,
                  frequencyPenalty: frequencyPenalty, presencePenalty: presencePenalty)
        }
    }
}
