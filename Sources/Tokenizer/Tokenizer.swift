import GGUF
import Synchronization

/// Text <-> token ids for a GGUF model, giving the same ids as llama.cpp.
///
/// Supports byte-level BPE (`tokenizer.ggml.model == "gpt2"`, with the pre-tokenizers of
/// ``PreTokenizer``) and SentencePiece (`"llama"`). Thread-safe; encoding caches per-word BPE results.
public final class Tokenizer: Sendable {
    /// The metadata this tokenizer was built from.
    public let model: TokenizerModel

    private enum Engine: Sendable {
        case bpe(BytePairEncoder, PreTokenizer)
        case sentencePiece(SentencePieceEncoder)
    }

    private let engine: Engine
    private let texts: [[UInt8]]
    private let table: ByteStringTable
    private let special: SpecialTokens
    private let wordCache = Mutex<[[UInt8]: [Int32]]>([:])
    private static let wordCacheLimit = 50_000

    /// Builds the tokenizer. Throws when the pre-tokenizer is unknown, arrays are inconsistent, or a
    /// special token needed by `addBos`/`addEos` is missing.
    public init(model: TokenizerModel) throws(TokenizerError) {
        let n = model.tokens.count
        guard model.tokenTypes.count >= n else {
            throw .arrayTooShort(key: "tokenizer.ggml.token_type", count: model.tokenTypes.count, expected: n)
        }
        guard model.scores.count >= n else {
            throw .arrayTooShort(key: "tokenizer.ggml.scores", count: model.scores.count, expected: n)
        }
        for (name, id) in [("bos", model.bosId), ("eos", model.eosId), ("unk", model.unkId), ("pad", model.padId),
                           ("eot", model.eotId), ("eom", model.eomId)] {
            if let id, id < 0 || Int(id) >= n { throw .invalidSpecialToken(name: name, id: Int(id)) }
        }
        if model.addBos && model.bosId == nil { throw .invalidSpecialToken(name: "bos", id: nil) }
        if model.addEos && model.eosId == nil { throw .invalidSpecialToken(name: "eos", id: nil) }

        self.model = model
        var texts: [[UInt8]] = []
        texts.reserveCapacity(n)
        var table = ByteStringTable(capacity: n)
        for (i, t) in model.tokens.enumerated() {
            let bytes = t.isEmpty ? Array("[EMPTY_\(i)]".utf8) : Array(t.utf8)
            table.insert(bytes, id: Int32(i))
            texts.append(bytes)
        }
        self.texts = texts
        self.table = table
        self.special = SpecialTokens(model: model, texts: texts)
        switch model.kind {
        case .bpe:
            let pre = try PreTokenizer(name: model.preTokenizer)
            engine = .bpe(BytePairEncoder(tokens: texts, table: table, merges: model.merges,
                                          ignoreMerges: pre.ignoreMerges), pre)
        case .sentencePiece:
            engine = .sentencePiece(SentencePieceEncoder(table: table, scores: model.scores, unkId: model.unkId))
        }
    }

    /// Reads the tokenizer from a GGUF file's metadata.
    public convenience init(gguf: GGUFFile) throws(TokenizerError) {
        try self.init(model: TokenizerModel(gguf: gguf))
    }

    // MARK: Properties

    /// Number of tokens in the vocabulary.
    public var vocabularySize: Int { texts.count }
    /// Beginning-of-sequence token.
    public var bosToken: Int32? { model.bosId }
    /// End-of-sequence token.
    public var eosToken: Int32? { model.eosId }
    /// The model's Jinja chat template, if the file has one.
    public var chatTemplate: String? { model.chatTemplate }

    /// Whether generating `id` ends generation: EOS, EOT, EOM and the control tokens llama.cpp treats
    /// as end-of-generation (e.g. `<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`).
    public func isEndOfGeneration(_ id: Int32) -> Bool { special.endOfGeneration.contains(id) }

    /// All end-of-generation ids, sorted.
    public var endOfGenerationTokens: [Int32] { special.endOfGeneration.sorted() }

    /// The id of the token whose text is exactly `text` (e.g. `"<|im_start|>"`), if any.
    public func token(for text: String) -> Int32? { table.lookup(text) }

    /// Whether `id` is a control token (type 3, or promoted to control as llama.cpp does).
    public func isControl(_ id: Int32) -> Bool {
        guard id >= 0, Int(id) < texts.count else { return false }
        return special.types[Int(id)] == .control
    }

    // MARK: Encoding

    /// Token ids for `text`.
    /// - Parameters:
    ///   - addSpecial: add BOS/EOS as the model's `add_bos_token`/`add_eos_token` say.
    ///   - parseSpecial: match control tokens written in the text (like `<|im_start|>`); user-defined
    ///     tokens are always matched, as in llama.cpp.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = true) -> [Int32] {
        let bytes = Array(text.utf8)
        let fragments = special.partition(bytes, parseSpecial: parseSpecial)
        var out: [Int32] = []
        out.reserveCapacity(bytes.count / 3 + 2)
        if addSpecial && model.addBos, let bos = model.bosId { out.append(bos) }
        switch engine {
        case let .bpe(bpe, pre):
            for fragment in fragments {
                switch fragment {
                case let .token(id): out.append(id)
                case let .text(range): encodeBPE(bytes[range], bpe: bpe, pre: pre, into: &out)
                }
            }
        case let .sentencePiece(spm):
            var previousSpecial = true
            for fragment in fragments {
                switch fragment {
                case let .token(id):
                    out.append(id)
                    previousSpecial = true
                case let .text(range):
                    var piece: [UInt8] = []
                    piece.reserveCapacity(range.count + 3)
                    if model.addSpacePrefix && previousSpecial { piece.append(contentsOf: [0xE2, 0x96, 0x81]) }
                    for b in bytes[range] {
                        if b == 0x20 { piece.append(contentsOf: [0xE2, 0x96, 0x81]) } else { piece.append(b) }
                    }
                    spm.encode(piece, into: &out)
                    previousSpecial = false
                }
            }
        }
        if addSpecial && model.addEos, let eos = model.eosId { out.append(eos) }
        return out
    }

    private func encodeBPE(_ text: ArraySlice<UInt8>, bpe: BytePairEncoder, pre: PreTokenizer, into out: inout [Int32]) {
        // Code points with their byte offsets, so words can be cut from the UTF-8 directly.
        var cps: [UInt32] = []
        var offsets: [Int] = []
        cps.reserveCapacity(text.count)
        offsets.reserveCapacity(text.count + 1)
        var i = text.startIndex
        while i < text.endIndex {
            let (cp, len) = Self.decodeScalar(text, at: i)
            cps.append(cp); offsets.append(i)
            i += len
        }
        offsets.append(text.endIndex)
        for word in pre.split(cps) {
            let slice = text[offsets[word.lowerBound]..<offsets[word.upperBound]]
            if slice.count <= 64 {
                let key = Array(slice)
                if let cached = wordCache.withLock({ $0[key] }) {
                    out.append(contentsOf: cached)
                    continue
                }
                var ids: [Int32] = []
                bpe.encode(word: slice, into: &ids)
                wordCache.withLock { cache in
                    if cache.count >= Self.wordCacheLimit { cache.removeAll(keepingCapacity: true) }
                    cache[key] = ids
                }
                out.append(contentsOf: ids)
            } else {
                bpe.encode(word: slice, into: &out)
            }
        }
    }

    /// Decodes one code point of valid UTF-8 (Swift strings always are) at `i`.
    private static func decodeScalar(_ s: ArraySlice<UInt8>, at i: Int) -> (UInt32, Int) {
        let b0 = UInt32(s[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(s[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 {
            return ((b0 & 0x0F) << 12 | UInt32(s[i + 1] & 0x3F) << 6 | UInt32(s[i + 2] & 0x3F), 3)
        }
        return ((b0 & 0x07) << 18 | UInt32(s[i + 1] & 0x3F) << 12 | UInt32(s[i + 2] & 0x3F) << 6
                | UInt32(s[i + 3] & 0x3F), 4)
    }

    // MARK: Decoding

    /// The bytes token `id` prints as (llama.cpp's `token_to_piece` with `special = true`): control,
    /// unknown and user-defined tokens print their text, byte tokens their byte, normal tokens their
    /// decoded text. Unused or out-of-range ids print nothing.
    public func piece(_ id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < texts.count else { return [] }
        let text = texts[Int(id)]
        switch special.types[Int(id)] {
        case .control, .unknown, .userDefined:
            return text
        case .normal:
            switch model.kind {
            case .bpe: return ByteLevel.decode(model.tokens[Int(id)])
            case .sentencePiece: return Self.unescapeSpaces(text)
            }
        case .byte:
            return Self.byteTokenValue(text).map { [$0] } ?? []
        case .unused, .undefined:
            return []
        }
    }

    /// Text for `ids`: the pieces concatenated (invalid UTF-8 becomes U+FFFD).
    /// - Parameter skipSpecial: leave out control and unknown tokens (BOS, `<|im_end|>`, ...).
    /// For SentencePiece models with a space prefix, the space the encoder added before the first
    /// word is removed.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        var stripSpace = model.kind == .sentencePiece && model.addSpacePrefix
        for (i, id) in ids.enumerated() {
            if i == 0 && id == model.bosId && model.addBos && stripSpace {
                if !skipSpecial { bytes.append(contentsOf: piece(id)) }
                continue
            }
            if skipSpecial && isSkippable(id) { continue }
            var p = piece(id)
            if stripSpace {
                if p.first == 0x20 { p.removeFirst() }
                stripSpace = false
            }
            bytes.append(contentsOf: p)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func isSkippable(_ id: Int32) -> Bool {
        guard id >= 0, Int(id) < texts.count else { return true }
        let t = special.types[Int(id)]
        return t == .control || t == .unknown
    }

    private static func unescapeSpaces(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            if i + 2 < text.count && text[i] == 0xE2 && text[i + 1] == 0x96 && text[i + 2] == 0x81 {
                out.append(0x20)
                i += 3
            } else {
                out.append(text[i])
                i += 1
            }
        }
        return out
    }

    /// Value of a `<0xXX>` token text.
    private static func byteTokenValue(_ text: [UInt8]) -> UInt8? {
        guard text.count == 6, text[0] == 0x3C, text[1] == 0x30, text[2] == 0x78, text[5] == 0x3E else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        guard let hi = hex(text[3]), let lo = hex(text[4]) else { return nil }
        return hi << 4 | lo
    }
}
