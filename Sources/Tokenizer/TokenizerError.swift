/// Problems building a tokenizer from model metadata.
public enum TokenizerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A required metadata key is absent or has the wrong type.
    case missingMetadata(key: String)
    /// `tokenizer.ggml.model` names a tokenizer kind this library does not implement.
    case unsupportedModel(String)
    /// `tokenizer.ggml.pre` names a pre-tokenizer this library does not implement.
    case unsupportedPreTokenizer(String)
    /// A per-token array (types or scores) is shorter than the token list.
    case arrayTooShort(key: String, count: Int, expected: Int)
    /// A special token id is needed (e.g. BOS when `add_bos` is set) but missing or out of range.
    case invalidSpecialToken(name: String, id: Int?)
    /// The vocabulary lacks a token the tokenizer needs (e.g. a byte token).
    case missingToken(String)

    public var description: String {
        switch self {
        case let .missingMetadata(key): return "tokenizer metadata '\(key)' is missing or has the wrong type"
        case let .unsupportedModel(m): return "unsupported tokenizer model '\(m)' (supported: gpt2, llama)"
        case let .unsupportedPreTokenizer(p): return "unsupported pre-tokenizer '\(p)'"
        case let .arrayTooShort(key, count, expected):
            return "tokenizer metadata '\(key)' has \(count) entries, expected at least \(expected)"
        case let .invalidSpecialToken(name, id):
            return "special token \(name) id \(id.map(String.init) ?? "nil") is missing or outside the vocabulary"
        case let .missingToken(t): return "vocabulary has no token '\(t)'"
        }
    }
}
