import CaravanCore

/// How much KV room a stage's caches take, now and after a batch: what a worker checks against
/// the room its plan sized before it runs a step (a sequence's cache grows when a step writes
/// past its capacity, so a step can allocate; checking first keeps a refused step from
/// allocating anything).
extension LlamaStage {
    /// Positions the caches of all sequences have room for now (the stage's KV bytes are this
    /// times ``kvBytesPerPosition``).
    public var cachePositions: Int { cache.allocatedPositions }

    /// Bytes one cached position takes: F16 keys and values of each of the stage's layers.
    public var kvBytesPerPosition: Int { 2 * 2 * layers.count * configuration.kvDimension }

    /// The positions the caches will have room for once `batch` has run (``cachePositions`` plus
    /// the growth of every sequence the batch writes past its capacity, new ones included), and
    /// the number of sequences then open. Changes nothing.
    public func cachePositions(after batch: StageBatch) -> (positions: Int, sequences: Int) {
        var needed: [SequenceID: Int] = [:]
        for e in batch.entries {  // (positions past the context are refused by forward; clamped here)
            needed[e.sequence] = max(needed[e.sequence] ?? 0, min(max(0, e.position), contextLimit - 1) + 1)
        }
        var total = cache.allocatedPositions
        var opened = 0
        for (id, positions) in needed {
            let current = cache.sequences[id]?.capacity ?? 0
            if cache.sequences[id] == nil { opened += 1 }
            total += KVCache.Sequence.capacity(growing: current, toHold: positions, limit: contextLimit) - current
        }
        return (total, cache.sequences.count + opened)
    }
}
