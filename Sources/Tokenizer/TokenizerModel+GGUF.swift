import GGUF

extension TokenizerModel {
    /// Reads the tokenizer description from a GGUF file's `tokenizer.*` metadata.
    ///
    /// Throws ``TokenizerError`` when the token list is missing, the model kind is unsupported or
    /// per-token arrays are too short. Special ids outside the vocabulary are dropped (as llama.cpp does).
    public init(gguf: GGUFFile) throws(TokenizerError) {
        guard let modelName = gguf.string("tokenizer.ggml.model") else {
            throw .missingMetadata(key: "tokenizer.ggml.model")
        }
        guard let kind = Kind(rawValue: modelName) else { throw .unsupportedModel(modelName) }
        guard let tokens = gguf.stringArray("tokenizer.ggml.tokens") else {
            throw .missingMetadata(key: "tokenizer.ggml.tokens")
        }
        let n = tokens.count
        var types: [TokenType]? = nil
        if gguf.metadata["tokenizer.ggml.token_type"] != nil {
            guard let raw = gguf.intArray("tokenizer.ggml.token_type") else {
                throw .missingMetadata(key: "tokenizer.ggml.token_type")
            }
            guard raw.count >= n else {
                throw .arrayTooShort(key: "tokenizer.ggml.token_type", count: raw.count, expected: n)
            }
            types = raw.prefix(n).map { TokenType(rawValue: Int32(truncatingIfNeeded: $0)) ?? .undefined }
        }
        var scores: [Float]? = nil
        if gguf.metadata["tokenizer.ggml.scores"] != nil {
            guard let s = gguf.floatArray("tokenizer.ggml.scores")
                    ?? gguf.intArray("tokenizer.ggml.scores")?.map(Float.init) else {
                throw .missingMetadata(key: "tokenizer.ggml.scores")
            }
            guard s.count >= n else { throw .arrayTooShort(key: "tokenizer.ggml.scores", count: s.count, expected: n) }
            scores = Array(s.prefix(n))
        }
        var merges: [String] = []
        if kind == .bpe {
            guard let m = gguf.stringArray("tokenizer.ggml.merges") else {
                throw .missingMetadata(key: "tokenizer.ggml.merges")
            }
            merges = m
        }
        func id(_ key: String, default def: Int32?) -> Int32? {
            var value = def
            if let v = value, v < 0 || Int(v) >= n { value = nil }
            if let raw = gguf.int("tokenizer.ggml." + key), raw >= 0, raw < n { value = Int32(raw) }
            return value
        }
        let spm = kind == .sentencePiece
        self.init(kind: kind, preTokenizer: gguf.string("tokenizer.ggml.pre"), tokens: tokens,
                  tokenTypes: types, scores: scores, merges: merges,
                  bosId: id("bos_token_id", default: spm ? 1 : 11),
                  eosId: id("eos_token_id", default: spm ? 2 : 11),
                  unkId: id("unknown_token_id", default: spm ? 0 : nil),
                  padId: id("padding_token_id", default: nil),
                  eotId: id("eot_token_id", default: nil),
                  eomId: id("eom_token_id", default: nil),
                  addBos: gguf.bool("tokenizer.ggml.add_bos_token"),
                  addEos: gguf.bool("tokenizer.ggml.add_eos_token"),
                  addSpacePrefix: gguf.bool("tokenizer.ggml.add_space_prefix"),
                  chatTemplate: gguf.string("tokenizer.chat_template"))
    }
}
