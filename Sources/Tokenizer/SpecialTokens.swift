/// Special-token bookkeeping derived from the vocabulary the way llama.cpp does it: which tokens are
/// matched verbatim in input text, and which end generation.
struct SpecialTokens: Sendable {
    /// Token texts llama.cpp treats as end-of-generation (and forces to control type).
    static let endOfGenerationTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<\u{FF5C}end\u{2581}of\u{2581}sentence\u{FF5C}>", "[e~[",
    ]
    /// Texts of the "end of turn" token llama.cpp looks for when the file names none.
    static let endOfTurnTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
        "_<EOT>", "[EOT]", "<\u{FF5C}end\u{2581}of\u{2581}sentence\u{FF5C}>", "<end_of_utterance>",
    ]
    /// FIM pad / repo / file-separator texts; llama.cpp counts these as end-of-generation too.
    static let fimEndTexts: [Set<String>] = [
        ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
        ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
        ["<|file_sep|>"],
    ]

    /// Tokens matched in raw text, longest text first: (id, bytes, isControlOrUnknown).
    let matchable: [(id: Int32, bytes: [UInt8], controlLike: Bool)]
    /// End-of-generation ids.
    let endOfGeneration: Set<Int32>
    /// Effective types after llama.cpp's overrides (EOG-looking tokens become control).
    let types: [TokenizerModel.TokenType]

    init(model: TokenizerModel, texts: [[UInt8]]) {
        var types = model.tokenTypes
        var eog = Set<Int32>()
        func markControl(_ id: Int32) { if types[Int(id)] != .control { types[Int(id)] = .control } }
        // auto-detected end-of-turn / end-of-message when the file names none (lowest id wins)
        var eot = model.eotId, eom = model.eomId
        var fim: [Int32?] = [nil, nil, nil]
        for (i, t) in model.tokens.enumerated() {
            // every listed text starts with '<', '[' or '_'; skip the rest without hashing
            guard let first = texts[i].first, first == 0x3C || first == 0x5B || first == 0x5F else { continue }
            let id = Int32(i)
            if eot == nil && Self.endOfTurnTexts.contains(t) { eot = id; markControl(id) }
            if eom == nil && t == "<|eom_id|>" { eom = id; markControl(id) }
            for k in 0..<3 where fim[k] == nil && Self.fimEndTexts[k].contains(t) { fim[k] = id; markControl(id) }
            if Self.endOfGenerationTexts.contains(t) { eog.insert(id); markControl(id) }
        }
        for f in fim { if let f { eog.insert(f) } }
        // gpt-oss renders these channel markers as text (llama.cpp makes them user-defined)
        for marker in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let id = model.tokens.firstIndex(of: marker) { types[id] = .userDefined }
        }
        for id in [model.eosId, eot, eom] { if let id { eog.insert(id) } }
        // harmony / solar-open vocabularies: "<|end|>" ends a message, not generation
        func eogText(_ t: String) -> Int32? { eog.first { model.tokens[Int($0)] == t } }
        let hasCall = (eogText("<|call|>") ?? eogText("<|calls|>")) != nil
        if let end = eogText("<|end|>"), hasCall, eogText("<|return|>") != nil || eogText("<|flush|>") != nil {
            eog.remove(end)
            types[Int(end)] = .userDefined
        }
        self.endOfGeneration = eog
        self.types = types

        var list: [(id: Int32, bytes: [UInt8], controlLike: Bool)] = []
        for (i, type) in types.enumerated() where type == .control || type == .userDefined || type == .unknown {
            list.append((Int32(i), texts[i], type != .userDefined))
        }
        list.sort { a, b in a.bytes.count != b.bytes.count ? a.bytes.count > b.bytes.count : a.id < b.id }
        matchable = list
    }

    /// A piece of input: raw text (byte range) or a special token.
    enum Fragment: Equatable {
        case text(Range<Int>)
        case token(Int32)
    }

    /// Splits `text` at occurrences of special tokens (llama.cpp's `tokenizer_st_partition`).
    /// Control and unknown tokens are only matched when `parseSpecial`; user-defined ones always are.
    func partition(_ text: [UInt8], parseSpecial: Bool) -> [Fragment] {
        if text.isEmpty { return [] }
        var fragments: [Fragment] = [.text(0..<text.count)]
        for special in matchable where parseSpecial || !special.controlLike {
            let needle = special.bytes
            guard !needle.isEmpty else { continue }
            var out: [Fragment] = []
            out.reserveCapacity(fragments.count)
            for fragment in fragments {
                guard case let .text(range) = fragment else { out.append(fragment); continue }
                var start = range.lowerBound
                while let m = Self.find(needle, in: text, from: start, to: range.upperBound) {
                    if m > start { out.append(.text(start..<m)) }
                    out.append(.token(special.id))
                    start = m + needle.count
                }
                if start < range.upperBound { out.append(.text(start..<range.upperBound)) }
            }
            fragments = out
        }
        return fragments
    }

    private static func find(_ needle: [UInt8], in hay: [UInt8], from: Int, to: Int) -> Int? {
        let n = needle.count
        guard to - from >= n else { return nil }
        let first = needle[0]
        var i = from
        while i <= to - n {
            if hay[i] == first {
                var j = 1
                while j < n && hay[i + j] == needle[j] { j += 1 }
                if j == n { return i }
            }
            i += 1
        }
        return nil
    }
}
