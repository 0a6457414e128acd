/// Everything a tokenizer needs, as read from model metadata (`tokenizer.ggml.*` in GGUF files).
///
/// Build it with ``init(gguf:)`` or by hand (tests, synthetic vocabularies). Defaults for keys a file
/// leaves out follow llama.cpp (e.g. SentencePiece adds BOS and a space prefix; llama3 BPE adds BOS).
public struct TokenizerModel: Sendable, Equatable {
    /// The tokenizer algorithm (`tokenizer.ggml.model`).
    public enum Kind: String, Sendable, Equatable {
        /// Byte-level BPE with merges (`"gpt2"`).
        case bpe = "gpt2"
        /// SentencePiece-style BPE driven by token scores, with byte fallback (`"llama"`).
        case sentencePiece = "llama"
    }

    /// Token type codes stored in `tokenizer.ggml.token_type`.
    public enum TokenType: Int32, Sendable, Equatable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// Algorithm.
    public var kind: Kind
    /// Pre-tokenizer name (`tokenizer.ggml.pre`), e.g. `"smollm"`, `"llama-bpe"`, `"gpt-2"`, `"default"`.
    public var preTokenizer: String?
    /// Token texts, indexed by id.
    public var tokens: [String]
    /// Token types, one per token (`.normal` when the file has none).
    public var tokenTypes: [TokenType]
    /// Token scores, one per token (zeros when the file has none). Used by SentencePiece.
    public var scores: [Float]
    /// BPE merges, `"left right"`, highest priority first.
    public var merges: [String]
    /// Special token ids.
    public var bosId: Int32?, eosId: Int32?, unkId: Int32?, padId: Int32?, eotId: Int32?, eomId: Int32?
    /// Whether `encode(addSpecial: true)` prepends BOS / appends EOS.
    public var addBos: Bool, addEos: Bool
    /// SentencePiece: prefix the text (and text after a special token) with a space.
    public var addSpacePrefix: Bool
    /// Jinja chat template (`tokenizer.chat_template`).
    public var chatTemplate: String?

    /// Creates a model; unspecified options take llama.cpp's defaults for `kind` and `preTokenizer`.
    public init(kind: Kind, preTokenizer: String? = nil, tokens: [String], tokenTypes: [TokenType]? = nil,
                scores: [Float]? = nil, merges: [String] = [],
                bosId: Int32? = nil, eosId: Int32? = nil, unkId: Int32? = nil, padId: Int32? = nil,
                eotId: Int32? = nil, eomId: Int32? = nil,
                addBos: Bool? = nil, addEos: Bool? = nil, addSpacePrefix: Bool? = nil,
                chatTemplate: String? = nil) {
        self.kind = kind
        self.preTokenizer = preTokenizer
        self.tokens = tokens
        self.tokenTypes = tokenTypes ?? Array(repeating: .normal, count: tokens.count)
        self.scores = scores ?? Array(repeating: 0, count: tokens.count)
        self.merges = merges
        self.bosId = bosId; self.eosId = eosId; self.unkId = unkId; self.padId = padId
        self.eotId = eotId; self.eomId = eomId
        let spm = kind == .sentencePiece
        self.addBos = addBos ?? (spm || PreTokenizer.addsBosByDefault(preTokenizer))
        self.addEos = addEos ?? false
        self.addSpacePrefix = addSpacePrefix ?? spm
        self.chatTemplate = chatTemplate
    }
}
