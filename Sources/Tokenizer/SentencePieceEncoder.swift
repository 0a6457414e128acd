/// SentencePiece-style encoding (llama.cpp's `llm_tokenizer_spm`): start from UTF-8 characters and
/// repeatedly merge the adjacent pair whose concatenation is the highest-scoring token (leftmost on ties).
/// Characters left that are not tokens become byte tokens `<0xXX>`.
struct SentencePieceEncoder: Sendable {
    private let table: ByteStringTable
    private let scores: [Float]
    /// Token for each byte: `<0xXX>`, else the one-byte string, else nil.
    private let byteTokens: [Int32?]
    private let unkId: Int32?

    init(table: ByteStringTable, scores: [Float], unkId: Int32?) {
        self.table = table
        self.scores = scores
        self.unkId = unkId
        let hex = Array("0123456789ABCDEF".utf8)
        byteTokens = (0..<256).map { b in
            let name: [UInt8] = [0x3C, 0x30, 0x78, hex[b >> 4], hex[b & 15], 0x3E]  // <0xXX>
            return table.lookup(name) ?? table.lookup([UInt8(b)])
        }
    }

    /// Appends the tokens of `text` (already space-escaped with U+2581) to `out`.
    func encode(_ text: [UInt8], into out: inout [Int32]) {
        if text.isEmpty { return }
        var start: [Int] = [], len: [Int] = []
        var offs = 0
        while offs < text.count {
            let b = text[offs]
            let n = b < 0x80 ? 1 : b < 0xE0 ? (b < 0xC0 ? 1 : 2) : b < 0xF0 ? 3 : 4
            let l = min(n, text.count - offs)
            start.append(offs); len.append(l)
            offs += l
        }
        let count = start.count
        var next = Array(1...count); next[count - 1] = -1
        var prev = Array(-1..<(count - 1))

        struct Bigram { var score: Float; var left: Int; var right: Int; var size: Int }
        var queue = MinHeap<Bigram> { a, b in a.score > b.score || (a.score == b.score && a.left < b.left) }
        text.withUnsafeBufferPointer { buf in
            func add(_ l: Int, _ r: Int) {
                guard l >= 0, r >= 0 else { return }
                let size = len[l] + len[r]
                let slice = UnsafeBufferPointer(rebasing: buf[start[l]..<(start[l] + size)])
                guard let id = table.lookup(slice), Int(id) < scores.count else { return }
                queue.push(Bigram(score: scores[Int(id)], left: l, right: r, size: size))
            }
            for i in 1..<max(count, 1) { add(i - 1, i) }
            while let bg = queue.pop() {
                let l = bg.left, r = bg.right
                guard len[l] > 0, len[r] > 0, len[l] + len[r] == bg.size else { continue }
                len[l] += len[r]
                len[r] = 0
                next[l] = next[r]
                if next[r] >= 0 { prev[next[r]] = l }
                add(prev[l], l)
                add(l, next[l])
            }
            var i = 0
            while i >= 0 {
                let slice = UnsafeBufferPointer(rebasing: buf[start[i]..<(start[i] + len[i])])
                if let id = table.lookup(slice) {
                    out.append(id)
                } else {
                    for b in slice {
                        if let id = byteTokens[Int(b)] ?? unkId { out.append(id) }
                    }
                }
                i = next[i]
            }
        }
    }
}
