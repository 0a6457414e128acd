import Foundation
import CaravanCore
import Llama
import Sampling
import Tokenizer

/// Why a generation ended.
public enum FinishReason: String, Sendable, Codable, Equatable {
    /// `maxTokens` tokens were generated.
    case length
    /// A stop string appeared in the output.
    case stop
    /// The model produced an end-of-generation token.
    case endOfGeneration = "eog"
    /// The sequence reached the context limit.
    case contextFull = "context"
    /// The caller cancelled it.
    case cancelled
}

/// What one step of a session produced.
public enum GenerationEvent: Sendable, Equatable {
    /// A token was sampled; `text` is the output text that became safe to show (maybe empty).
    case token(id: Int32, text: String)
    /// Generation ended; `text` is the last text to show (held-back characters).
    case finished(reason: FinishReason, text: String)
}

/// The log-probabilities reported with one generated token (the record a stage's sampler
/// produces, kept under the session's name).
public typealias TokenLogprobs = SampledLogprobs

/// A candidate token with its log-probability.
public typealias TokenAlternative = SampledAlternative

/// Errors detected before generation starts.
public enum GenerationError: Error, Equatable, CustomStringConvertible, Sendable {
    case emptyPrompt
    case promptTooLong(tokens: Int, limit: Int)
    case invalidParameters(String)

    public var description: String {
        switch self {
        case .emptyPrompt: return "the prompt is empty (no tokens)"
        case let .promptTooLong(t, l):
            return "the prompt has \(t) tokens but the context holds \(l) (shorten it or raise --ctx)"
        case let .invalidParameters(m): return "invalid sampling parameters: \(m)"
        }
    }
}

/// The state of one generation (one sequence): its tokens, what the engine has already seen,
/// the sampler chain, stop strings and the streaming detokenizer.
///
/// Pure state machine: it never calls the engine itself. A scheduler asks it for the rows to feed
/// (``pendingEntries(limit:)``), runs them, and hands back the logits (``accept(logits:)``) or the
/// token the engine sampled from them (``accept(sampled:)``).
public final class GenerationSession: @unchecked Sendable {
    /// The sequence in the engine's caches.
    public let sequence: SequenceID
    /// Prompt followed by generated tokens.
    public private(set) var tokens: [Int32]
    /// Number of prompt tokens.
    public let promptCount: Int
    /// Tokens already in the engine's cache.
    public private(set) var processed = 0
    /// Set once generation has ended.
    public private(set) var finishReason: FinishReason?
    /// Sampling parameters in use.
    public let parameters: SamplingParameters
    /// Per generated token, when the parameters ask for logprobs (empty otherwise, and for tokens
    /// restored after a coordinator restart).
    public private(set) var logprobs: [TokenLogprobs] = []

    private var sampler: Sampler
    private var stopMatcher: StopSequenceMatcher
    private var detokenizer: StreamingDetokenizer
    private let tokenizer: Tokenizer
    private let contextLimit: Int

    /// Number of generated tokens.
    public var generatedCount: Int { tokens.count - promptCount }
    /// Generated token ids.
    public var generatedTokens: ArraySlice<Int32> { tokens[promptCount...] }
    /// Whether generation has ended.
    public var isFinished: Bool { finishReason != nil }

    /// Starts a session for `prompt` (token ids).
    public init(sequence: SequenceID, prompt: [Int32], parameters: SamplingParameters, tokenizer: Tokenizer,
                contextLimit: Int) throws(GenerationError) {
        guard !prompt.isEmpty else { throw .emptyPrompt }
        guard prompt.count < contextLimit else { throw .promptTooLong(tokens: prompt.count, limit: contextLimit) }
        do {
            sampler = try Sampler(parameters: parameters)
        } catch {
            throw .invalidParameters(error.description)
        }
        self.sequence = sequence
        self.tokens = prompt
        self.promptCount = prompt.count
        self.parameters = parameters
        self.tokenizer = tokenizer
        self.contextLimit = contextLimit
        self.stopMatcher = StopSequenceMatcher(stops: parameters.stop)
        self.detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
    }

    /// The next rows to feed: up to `limit` tokens the engine has not seen; the last one asks for
    /// logits when it is the newest token, and carries the ``SamplingRequest`` that lets the
    /// engine sample the next token itself (answer with ``accept(sampled:)``) or ignore it and
    /// return the logits (answer with ``accept(logits:)``). Empty when finished.
    public func pendingEntries(limit: Int) -> [StageEntry] {
        guard !isFinished, limit > 0 else { return [] }
        let end = min(tokens.count, processed + limit)
        return (processed..<end).map { p in
            let last = p == tokens.count - 1
            return StageEntry(sequence: sequence, position: p, token: tokens[p], wantsLogits: last,
                              sampling: last ? parameters.stageRequest(after: tokens) : nil)
        }
    }

    /// The engine lost this sequence's cache (the session moves to a new pipeline after a fault or
    /// a re-plan): the next entries replay the prompt and every generated token from position 0,
    /// the last of them asking for logits, and sampling continues at the same position. Nothing
    /// already emitted is emitted again, and because each draw depends only on the seed and the
    /// position, the continuation equals the uninterrupted run's.
    public func rewind() {
        processed = 0
    }

    /// As ``rewind()``, but the engine still holds positions `[0, position)` (every stage kept or
    /// adopted their keys and values): the next entries start there. Always leaves at least the
    /// newest token to feed (it asks for the logits of the next), and never goes past what was
    /// processed.
    public func rewind(to position: Int) {
        processed = max(0, min(position, processed, tokens.count - 1))
    }

    /// Rebuilds the state of a session that had already generated `generated` (after a
    /// coordinator restart): the tokens pass through the stop matcher and the streaming
    /// detokenizer again, their text discarded (it was delivered before), and the engine will
    /// replay them all. Only for a fresh session; a token ending generation ends it.
    public func restore(generated: [Int32]) {
        precondition(generatedCount == 0 && processed == 0, "restore(generated:) is for a fresh session")
        for token in generated where !isFinished {
            tokens.append(token)
            // Their logprobs were reported before the restart: keep the indices aligned.
            if parameters.logprobs || parameters.topLogprobs > 0 { logprobs.append(TokenLogprobs(logprob: .nan, top: [])) }
            if tokenizer.isEndOfGeneration(token) {
                _ = finish(.endOfGeneration)
                break
            }
            if stopMatcher.feed(detokenizer.append(token)).isStopped { finishReason = .stop }
        }
    }

    /// Records that the engine processed `count` more tokens (rows from ``pendingEntries(limit:)``).
    public func markProcessed(_ count: Int) {
        processed = min(tokens.count, processed + count)
    }

    /// Samples the next token from the logits of the newest token (modified in place) and advances
    /// the session. Samples exactly as a stage does for the request of ``pendingEntries(limit:)``.
    public func accept(logits: UnsafeMutableBufferPointer<Float>) -> [GenerationEvent] {
        guard !isFinished else { return [] }
        let window = parameters.stageRequest(after: tokens).history
        return accept(sampled: sampler.sampleRow(logits: logits, history: window, position: tokens.count))
    }

    /// Advances the session with the token the engine sampled for the newest row's request (see
    /// ``pendingEntries(limit:)``): end of generation, detokenizing, stop strings and limits are
    /// handled as for ``accept(logits:)``. A result without the logprobs the parameters ask for
    /// records NaN for them.
    public func accept(sampled row: SampledRow) -> [GenerationEvent] {
        guard !isFinished else { return [] }
        let token = row.token
        if parameters.logprobs || parameters.topLogprobs > 0 {
            logprobs.append(row.logprobs ?? TokenLogprobs(logprob: .nan, top: []))
        }
        tokens.append(token)
        var events: [GenerationEvent] = []
        if tokenizer.isEndOfGeneration(token) {
            return [finish(.endOfGeneration)]
        }
        let piece = detokenizer.append(token)
        let result = stopMatcher.feed(piece)
        if result.isStopped {
            finishReason = .stop
            return [.token(id: token, text: result.text), .finished(reason: .stop, text: "")]
        }
        events.append(.token(id: token, text: result.text))
        if generatedCount >= parameters.maxTokens {
            events.append(finish(.length))
        } else if tokens.count >= contextLimit {
            events.append(finish(.contextFull))
        }
        return events
    }

    /// Ends the session now (cancellation); returns the final event.
    public func cancel() -> GenerationEvent? {
        guard !isFinished else { return nil }
        return finish(.cancelled)
    }

    private func finish(_ reason: FinishReason) -> GenerationEvent {
        finishReason = reason
        let rest = stopMatcher.feed(detokenizer.flush())
        if rest.isStopped {
            finishReason = .stop
            return .finished(reason: .stop, text: rest.text)
        }
        return .finished(reason: reason, text: rest.text + stopMatcher.finish())
    }
}
