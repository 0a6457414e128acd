import CaravanCore
import Foundation
import Llama

/// Result of a perplexity run.
public struct PerplexityResult: Sendable, Equatable {
    /// exp(mean negative log-likelihood) over the scored tokens.
    public var perplexity: Double
    /// Standard error of the estimate (as llama.cpp prints after `+/-`).
    public var standardError: Double
    /// Chunks evaluated.
    public var chunks: Int
    /// Tokens scored.
    public var scoredTokens: Int
}

/// Perplexity computed the way llama.cpp's `perplexity` tool does, so the numbers compare:
/// the text is cut into chunks of `context` tokens (BOS replaces the first token of each chunk
/// when the vocabulary adds one), and the second half of each chunk is scored.
public enum Perplexity {
    /// Errors of a perplexity run.
    public enum Failure: Error, CustomStringConvertible {
        case textTooShort(tokens: Int, needed: Int)
        case contextTooSmall(Int)
        public var description: String {
            switch self {
            case let .textTooShort(t, n): return "the text has \(t) tokens; at least \(n) (2 x context) are needed"
            case let .contextTooSmall(c): return "context \(c) is too small (at least 8)"
            }
        }
    }

    /// Runs the chunks through `stage` (which must hold every layer).
    /// - Parameter progress: called after each chunk with (chunk index, chunk count, running perplexity).
    public static func compute(stage: LlamaStage, tokens: [Int32], context: Int, bos: Int32?,
                               progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> PerplexityResult {
        guard context >= 8 else { throw Failure.contextTooSmall(context) }
        guard tokens.count >= 2 * context else { throw Failure.textTooShort(tokens: tokens.count, needed: 2 * context) }
        let chunkCount = tokens.count / context
        let first = context / 2
        var nll: Double = 0, nll2: Double = 0
        var count = 0
        let seq = SequenceID(0)
        for c in 0..<chunkCount {
            stage.removeSequence(seq)
            let start = c * context
            var chunk = Array(tokens[start..<(start + context)])
            if let bos { chunk[0] = bos }
            let entries = chunk.enumerated().map {
                StageEntry(sequence: seq, position: $0.offset, token: $0.element,
                           wantsLogits: $0.offset >= first && $0.offset < context - 1)
            }
            guard case let .logits(values, indices, vocab) = try stage.forward(StageBatch(entries: entries)) else {
                preconditionFailure("perplexity needs the last stage")
            }
            values.withUnsafeBufferPointer { buf in
                for (r, j) in indices.enumerated() {
                    let row = buf.baseAddress! + r * vocab
                    var maxv = -Float.infinity
                    for i in 0..<vocab where row[i] > maxv { maxv = row[i] }
                    var sum: Double = 0
                    for i in 0..<vocab { sum += Double(expf(row[i] - maxv)) }
                    let target = Int(tokens[start + j + 1])
                    let logProb = Double(row[target] - maxv) - log(sum)
                    nll -= logProb
                    nll2 += logProb * logProb
                    count += 1
                }
            }
            progress(c, chunkCount, exp(nll / Double(count)))
        }
        stage.removeSequence(seq)
        let mean = nll / Double(count)
        let variance = max(0, nll2 / Double(count) - mean * mean)
        let error = count > 1 ? (variance / Double(count - 1)).squareRoot() * exp(mean) : 0
        return PerplexityResult(perplexity: exp(mean), standardError: error, chunks: chunkCount, scoredTokens: count)
    }
}
