import CaravanCore

/// The key/value cache of one stage: for each sequence, F16 keys and values of the stage's own
/// layers, `[layer][position][kvHeads * headDim]`, grown on demand up to the context limit.
final class KVCache {
    /// Cache of one sequence.
    final class Sequence {
        /// Positions `[0, length)` are filled.
        var length = 0
        private(set) var capacity = 0
        /// Per local layer: keys and values, `capacity * kvDim` halfs each.
        private(set) var keys: [UnsafeMutablePointer<UInt16>] = []
        private(set) var values: [UnsafeMutablePointer<UInt16>] = []

        deinit {
            keys.forEach { $0.deallocate() }
            values.forEach { $0.deallocate() }
        }

        /// Makes room for `positions` positions, keeping the contents.
        func reserve(_ positions: Int, layers: Int, kvDim: Int, limit: Int) {
            guard positions > capacity else { return }
            let newCapacity = Self.capacity(growing: capacity, toHold: positions, limit: limit)
            func grow(_ old: [UnsafeMutablePointer<UInt16>]) -> [UnsafeMutablePointer<UInt16>] {
                (0..<layers).map { l in
                    let raw = UnsafeMutableRawPointer.allocate(byteCount: newCapacity * kvDim * 2, alignment: 64)
                    let p = raw.bindMemory(to: UInt16.self, capacity: newCapacity * kvDim)
                    if l < old.count {
                        p.update(from: old[l], count: length * kvDim)
                        old[l].deallocate()
                    }
                    return p
                }
            }
            keys = grow(keys)
            values = grow(values)
            capacity = newCapacity
        }

        /// The capacity a cache of `capacity` positions grows to when it must hold `positions`:
        /// doubled, at least 64 and `positions`, at most `limit`. (The coordinator's admission
        /// reserves room by the same rule.)
        static func capacity(growing capacity: Int, toHold positions: Int, limit: Int) -> Int {
            guard positions > capacity else { return capacity }
            return min(limit, max(positions, max(64, capacity * 2)))
        }

        /// Bytes allocated.
        func byteCount(kvDim: Int) -> Int { 2 * keys.count * capacity * kvDim * 2 }
    }

    let layerCount: Int
    let kvDimension: Int
    /// Maximum positions per sequence.
    let contextLimit: Int
    private(set) var sequences: [SequenceID: Sequence] = [:]

    init(layerCount: Int, kvDimension: Int, contextLimit: Int) {
        self.layerCount = layerCount
        self.kvDimension = kvDimension
        self.contextLimit = contextLimit
    }

    /// The cache of `id`, created empty if new.
    func sequence(_ id: SequenceID) -> Sequence {
        if let s = sequences[id] { return s }
        let s = Sequence()
        sequences[id] = s
        return s
    }

    /// Number of filled positions of `id` (0 if unknown).
    func length(of id: SequenceID) -> Int { sequences[id]?.length ?? 0 }

    /// Drops a sequence and frees its memory.
    func remove(_ id: SequenceID) { sequences[id] = nil }

    /// Keeps only positions `[0, length)` of `id`.
    func truncate(_ id: SequenceID, to length: Int) {
        guard let s = sequences[id] else { return }
        s.length = min(s.length, max(0, length))
    }

    /// Positions allocated for all sequences (each position holds keys and values of every layer).
    var allocatedPositions: Int { sequences.values.reduce(0) { $0 + $1.capacity } }

    /// Bytes allocated for all sequences.
    var byteCount: Int { sequences.values.reduce(0) { $0 + $1.byteCount(kvDim: kvDimension) } }
}
