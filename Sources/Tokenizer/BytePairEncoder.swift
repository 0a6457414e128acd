/// Byte-level BPE (llama.cpp's `llm_tokenizer_bpe`): words are mapped through ``ByteLevel`` and merged
/// pairwise, lowest merge rank first (leftmost on ties), until no ranked pair remains.
///
/// Symbols are integers: vocabulary ids, plus extra ids for strings that occur in merges but are not
/// tokens themselves. A final symbol that is not a token falls back to single-byte tokens, as in llama.cpp.
struct BytePairEncoder: Sendable {
    private let tokenCount: Int32
    /// Symbol of each byte's mapped character.
    private let byteSymbol: [Int32]
    /// (left << 32 | right) -> (rank << 32 | merged symbol).
    private let merges: [UInt64: UInt64]
    /// Byte texts of extra (non-token) symbols, indexed by `symbol - tokenCount`.
    private let extraTexts: [[UInt8]]
    private let table: ByteStringTable
    private let ignoreMerges: Bool

    init(tokens: [[UInt8]], table: ByteStringTable, merges mergeList: [String], ignoreMerges: Bool) {
        let n = Int32(tokens.count)
        tokenCount = n
        self.table = table
        self.ignoreMerges = ignoreMerges
        var extraIndex: [[UInt8]: Int32] = [:]
        var extraTexts: [[UInt8]] = []
        func symbol<C: Collection>(_ bytes: C) -> Int32 where C.Element == UInt8 {
            let arr = Array(bytes)
            if let id = table.lookup(arr) { return id }
            if let e = extraIndex[arr] { return e }
            let id = n + Int32(extraTexts.count)
            extraIndex[arr] = id
            extraTexts.append(arr)
            return id
        }
        byteSymbol = (0..<256).map { symbol(ByteLevel.byteToUTF8[$0]) }
        var merges = [UInt64: UInt64](minimumCapacity: mergeList.count)
        for (rank, line) in mergeList.enumerated() {
            let bytes = Array(line.utf8)
            // split at the first space after position 0 (a merge may start with a space character)
            guard bytes.count > 1, let sp = bytes[1...].firstIndex(of: 0x20) else { continue }
            let left = symbol(bytes[..<sp]), right = symbol(bytes[(sp + 1)...])
            let merged = symbol(bytes[..<sp] + bytes[(sp + 1)...])
            let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
            if merges[key] == nil {
                merges[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged))
            }
        }
        self.merges = merges
        self.extraTexts = extraTexts
    }

    /// Appends the tokens of one pre-tokenized word (raw UTF-8 bytes) to `out`.
    func encode(word: ArraySlice<UInt8>, into out: inout [Int32]) {
        if word.isEmpty { return }
        if ignoreMerges {
            var encoded: [UInt8] = []
            encoded.reserveCapacity(word.count * 2)
            for b in word { encoded.append(contentsOf: ByteLevel.byteToUTF8[Int(b)]) }
            if let id = table.lookup(encoded) { out.append(id); return }
        }
        var syms = word.map { byteSymbol[Int($0)] }
        let count = syms.count
        var next = Array(1...count); next[count - 1] = -1
        var prev = Array(-1..<(count - 1))
        var alive = [Bool](repeating: true, count: count)

        struct Bigram { var rank: UInt32; var left: Int; var right: Int; var l: Int32; var r: Int32 }
        var queue = MinHeap<Bigram> { a, b in a.rank < b.rank || (a.rank == b.rank && a.left < b.left) }
        func add(_ l: Int, _ r: Int) {
            guard l >= 0, r >= 0 else { return }
            let key = UInt64(UInt32(bitPattern: syms[l])) << 32 | UInt64(UInt32(bitPattern: syms[r]))
            guard let v = merges[key] else { return }
            queue.push(Bigram(rank: UInt32(v >> 32), left: l, right: r, l: syms[l], r: syms[r]))
        }
        for i in 1..<max(count, 1) { add(i - 1, i) }
        while let bg = queue.pop() {
            let l = bg.left, r = bg.right
            guard alive[l], alive[r], next[l] == r, syms[l] == bg.l, syms[r] == bg.r else { continue }
            let key = UInt64(UInt32(bitPattern: bg.l)) << 32 | UInt64(UInt32(bitPattern: bg.r))
            guard let v = merges[key] else { continue }
            syms[l] = Int32(bitPattern: UInt32(truncatingIfNeeded: v))
            alive[r] = false
            next[l] = next[r]
            if next[r] >= 0 { prev[next[r]] = l }
            add(prev[l], l)
            add(l, next[l])
        }
        var i = 0
        while i >= 0 {
            let s = syms[i]
            if s < tokenCount {
                out.append(s)
            } else {
                // not a token: each byte of the symbol's text, where that single byte is a token
                for b in extraTexts[Int(s - tokenCount)] {
                    if let id = table.lookup([b]) { out.append(id) }
                }
            }
            i = next[i]
        }
    }
}
