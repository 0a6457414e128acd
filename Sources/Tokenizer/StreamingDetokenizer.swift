/// Turns a stream of generated token ids into text, emitting only complete UTF-8 characters.
///
/// A character whose bytes are spread over several tokens (emoji, CJK with byte-fallback or
/// byte-level tokens) is held back until its last byte arrives. Invalid sequences become U+FFFD.
public struct StreamingDetokenizer: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecial: Bool
    private var pending: [UInt8] = []

    /// - Parameters:
    ///   - tokenizer: supplies each token's bytes (``Tokenizer/piece(_:)``).
    ///   - skipSpecial: leave out control and unknown tokens (e.g. `<|im_end|>`).
    public init(tokenizer: Tokenizer, skipSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    public mutating func append(_ id: Int32) -> String {
        if skipSpecial && tokenizer.isSkippable(id) { return "" }
        pending.append(contentsOf: tokenizer.piece(id))
        let cut = Self.completePrefixLength(pending)
        guard cut > 0 else { return "" }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Returns whatever is held back (incomplete characters become U+FFFD) and resets.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside an unfinished UTF-8 sequence.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        // look back at most 3 bytes for the start of the last sequence
        var i = n - 1
        var back = 0
        while i >= 0 && back < 4 {
            let b = bytes[i]
            if b & 0xC0 != 0x80 {
                let need = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                return n - i >= need ? n : i
            }
            i -= 1
            back += 1
        }
        return n  // only continuation bytes: nothing to wait for, emit (as U+FFFD)
    }
}
