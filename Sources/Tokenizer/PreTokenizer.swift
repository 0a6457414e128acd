/// Splits text into words before BPE, reproducing the regex chains llama.cpp uses per `tokenizer.ggml.pre`.
///
/// Each stage refines the pieces of the previous one (a regex "isolates" its matches; the text between
/// matches becomes pieces too). The splitting is written by hand over code point classes, following the
/// regexes' semantics, without a regex engine.
struct PreTokenizer: Sendable {
    enum Stage: Sendable {
        /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
        case gpt2
        /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
        case llama3
        /// As ``llama3`` but `\p{N}` (digits one by one).
        case qwen2
        /// `\p{N}`: every number code point alone.
        case eachNumber
        /// `\p{N}+`
        case numberRuns
        /// `[\p{P}\$\+<=>\^~\|]+`
        case punctuationRuns
        /// `[0-9][0-9][0-9]`
        case asciiDigitTriples
    }

    let stages: [Stage]
    /// llama.cpp's `ignore_merges`: a word that is itself a token is emitted without running merges.
    let ignoreMerges: Bool

    /// The pre-tokenizer llama.cpp selects for `name` (`nil` or empty means "default").
    init(name: String?) throws(TokenizerError) {
        switch name ?? "" {
        case "", "default":
            stages = [.punctuationRuns, .gpt2, .numberRuns, .asciiDigitTriples]; ignoreMerges = false
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2":
            stages = [.llama3]; ignoreMerges = true
        case "dbrx", "smaug-bpe":
            stages = [.llama3]; ignoreMerges = false
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open":
            stages = [.qwen2]; ignoreMerges = false
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b":
            stages = [.eachNumber, .gpt2]; ignoreMerges = false
        case "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
             "gigachat", "mellum", "exaone4":
            stages = [.gpt2]; ignoreMerges = false
        case let other:
            throw .unsupportedPreTokenizer(other)
        }
    }

    /// Whether llama.cpp turns `add_bos` on by default for this pre-tokenizer (llama3 family).
    static func addsBosByDefault(_ name: String?) -> Bool {
        switch name ?? "" {
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2": return true
        default: return false
        }
    }

    /// Splits `cps` into words, returned as half-open code point ranges covering the whole input in order.
    func split(_ cps: [UInt32]) -> [Range<Int>] {
        if cps.isEmpty { return [] }
        let classes = cps.map(CodepointClass.init)
        var pieces = [0..<cps.count]
        for stage in stages {
            var next: [Range<Int>] = []
            next.reserveCapacity(pieces.count * 2)
            for piece in pieces {
                switch stage {
                case .gpt2: Self.splitGPT2(cps, classes, piece, into: &next)
                case .llama3: Self.splitLlama3(cps, classes, piece, maxDigits: 3, into: &next)
                case .qwen2: Self.splitLlama3(cps, classes, piece, maxDigits: 1, into: &next)
                case .eachNumber: Self.isolate(piece, into: &next, runs: false) { classes[$0].isNumber }
                case .numberRuns: Self.isolate(piece, into: &next, runs: true) { classes[$0].isNumber }
                case .punctuationRuns:
                    Self.isolate(piece, into: &next, runs: true) { i in
                        let c = cps[i]
                        if c < 128 {
                            // ASCII punctuation and $+<=>^~| ; everything printable but letters, digits and '`'.
                            return (0x21...0x2F).contains(c) || (0x3A...0x40).contains(c)
                                || (0x5B...0x5E).contains(c) || c == 0x5F || (0x7B...0x7E).contains(c)
                        }
                        return classes[i].isPunctuation && !classes[i].isWhitespace
                    }
                case .asciiDigitTriples: Self.splitDigitTriples(cps, piece, into: &next)
                }
            }
            pieces = next
        }
        return pieces
    }

    // MARK: Stages

    /// Isolates matches of a one-code-point class: each match alone (`runs == false`) or maximal runs.
    private static func isolate(_ piece: Range<Int>, into out: inout [Range<Int>], runs: Bool,
                                _ matches: (Int) -> Bool) {
        var start = piece.lowerBound
        var i = piece.lowerBound
        while i < piece.upperBound {
            if matches(i) {
                if start < i { out.append(start..<i) }
                var j = i + 1
                if runs { while j < piece.upperBound && matches(j) { j += 1 } }
                out.append(i..<j)
                i = j
                start = j
            } else {
                i += 1
            }
        }
        if start < piece.upperBound { out.append(start..<piece.upperBound) }
    }

    /// Non-overlapping `[0-9]{3}` matches, left to right.
    private static func splitDigitTriples(_ cps: [UInt32], _ piece: Range<Int>, into out: inout [Range<Int>]) {
        func digit(_ i: Int) -> Bool { cps[i] >= 0x30 && cps[i] <= 0x39 }
        var start = piece.lowerBound
        var i = piece.lowerBound
        while i + 3 <= piece.upperBound {
            if digit(i) && digit(i + 1) && digit(i + 2) {
                if start < i { out.append(start..<i) }
                out.append(i..<(i + 3))
                i += 3
                start = i
            } else {
                i += 1
            }
        }
        if start < piece.upperBound { out.append(start..<piece.upperBound) }
    }

    private static let apostrophe: UInt32 = 0x27, space: UInt32 = 0x20, cr: UInt32 = 0x0D, lf: UInt32 = 0x0A

    /// Length of an English contraction (`'s`, `'re`, ...) starting at `pos`, or 0.
    private static func contraction(_ cps: [UInt32], _ pos: Int, _ end: Int, caseInsensitive: Bool) -> Int {
        guard cps[pos] == apostrophe, pos + 1 < end else { return 0 }
        func lower(_ c: UInt32) -> UInt32 { caseInsensitive && c >= 0x41 && c <= 0x5A ? c + 32 : c }
        let a = lower(cps[pos + 1])
        switch a {
        case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
        default: break
        }
        guard pos + 2 < end else { return 0 }
        let b = lower(cps[pos + 2])
        if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return 3 }  // re ve ll
        return 0
    }

    private static func splitGPT2(_ cps: [UInt32], _ classes: [CodepointClass], _ piece: Range<Int>,
                                  into out: inout [Range<Int>]) {
        let end = piece.upperBound
        var pos = piece.lowerBound
        func cls(at i: Int) -> CodepointClass? { i < end ? classes[i] : nil }
        func emit(_ to: Int) { if to > pos { out.append(pos..<to) }; pos = to }
        while pos < end {
            let c = cps[pos]
            let n = contraction(cps, pos, end, caseInsensitive: false)
            if n > 0 { emit(pos + n); continue }
            let lead = c == space ? 1 : 0
            if let f = cls(at: pos + lead) {
                var j = pos + lead
                if f.isLetter {
                    while let g = cls(at: j), g.isLetter { j += 1 }
                    emit(j); continue
                }
                if f.isNumber {
                    while let g = cls(at: j), g.isNumber { j += 1 }
                    emit(j); continue
                }
                if f.isOther {
                    while let g = cls(at: j), g.isOther { j += 1 }
                    emit(j); continue
                }
            }
            var ws = 0
            while let g = cls(at: pos + ws), g.isWhitespace { ws += 1 }
            if ws > 1 && pos + ws < end { emit(pos + ws - 1); continue }  // \s+(?!\S)
            if ws > 0 { emit(pos + ws); continue }
            emit(pos + 1)
        }
    }

    private static func splitLlama3(_ cps: [UInt32], _ classes: [CodepointClass], _ piece: Range<Int>,
                                    maxDigits: Int, into out: inout [Range<Int>]) {
        let end = piece.upperBound
        var pos = piece.lowerBound
        func cls(at i: Int) -> CodepointClass? { i < end ? classes[i] : nil }
        func emit(_ to: Int) { if to > pos { out.append(pos..<to) }; pos = to }
        while pos < end {
            let c = cps[pos]
            let f = classes[pos]
            let n = contraction(cps, pos, end, caseInsensitive: true)
            if n > 0 { emit(pos + n); continue }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == cr || c == lf || f.isNumber) && (f.isLetter || cls(at: pos + 1)?.isLetter == true) {
                var j = pos + 1
                while let g = cls(at: j), g.isLetter { j += 1 }
                emit(j); continue
            }
            // \p{N}{1,3} (llama3) or \p{N} (qwen2)
            if f.isNumber {
                var j = pos
                while let g = cls(at: j), g.isNumber {
                    j += 1
                    if j - pos >= maxDigits { emit(j) }
                }
                emit(j); continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let f2 = c == space ? cls(at: pos + 1) : f
            if f2 == nil || f2!.isOther {
                var j = pos + (c == space ? 1 : 0)
                while let g = cls(at: j), g.isOther { j += 1 }
                while j < end && (cps[j] == cr || cps[j] == lf) { j += 1 }
                emit(j); continue
            }
            // \s*[\r\n]+ | \s+(?!\S) | \s+
            var ws = 0
            var lastNewlineEnd = 0
            while let g = cls(at: pos + ws), g.isWhitespace {
                let d = cps[pos + ws]
                if d == cr || d == lf { lastNewlineEnd = pos + ws + 1 }
                ws += 1
            }
            if lastNewlineEnd > 0 { emit(lastNewlineEnd); continue }
            if ws > 1 && pos + ws < end { emit(pos + ws - 1); continue }
            if ws > 0 { emit(pos + ws); continue }
            emit(pos + 1)
        }
    }
}
