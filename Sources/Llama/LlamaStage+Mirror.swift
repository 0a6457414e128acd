import CaravanCore

extension LlamaStage {
    /// Halfs per key (and per value) row of one layer: KV heads x head dimension.
    public var kvDimension: Int { configuration.kvDimension }

    /// Copies the keys and values of `range` (model numbering, within the stage's layers) of
    /// `sequence` at positions `[position, position + count)` into `out`, laid out
    /// `[layers][2 (keys, values)][count][kvDimension]` halfs: the rows a ``KVMirror`` takes.
    /// False (and nothing written) when the stage does not hold them in every layer, or `out` is
    /// not that size.
    public func copyKVRows(of sequence: SequenceID, layers range: LayerRange, position: Int, count: Int,
                           into out: UnsafeMutableRawBufferPointer) -> Bool {
        let kvd = configuration.kvDimension
        guard count > 0, position >= 0, range.start >= layers.start, range.end <= layers.end,
              let s = cache.sequences[sequence], position + count <= s.length,
              out.count == range.count * 2 * count * kvd * 2 else { return false }
        let halfs = out.bindMemory(to: UInt16.self).baseAddress!
        for (i, l) in range.layers.enumerated() {
            let local = l - layers.start
            let keys = halfs + i * 2 * count * kvd
            keys.update(from: s.keys[local] + position * kvd, count: count * kvd)
            (keys + count * kvd).update(from: s.values[local] + position * kvd, count: count * kvd)
        }
        return true
    }

    /// Fills the layers `locals` (not kept from the old stage) of `sequence`, already adopted,
    /// with positions `[0, count)` from `mirror`.
    func fill(_ sequence: SequenceID, locals: [Int], from mirror: KVMirror, count: Int) {
        let s = cache.sequence(sequence)
        for local in locals {
            mirror.copy(sequence, layer: layers.start + local, count: count, keys: s.keys[local], values: s.values[local])
        }
    }

    /// Positions of `sequence` that `mirror` holds in every one of `locals` (0 when it is not
    /// for this model's KV width, or holds nothing).
    func mirrored(_ sequence: SequenceID, locals: [Int], in mirror: KVMirror?) -> Int {
        guard let mirror, mirror.kvDimension == configuration.kvDimension, !locals.isEmpty else { return 0 }
        return locals.map { mirror.length(of: sequence, layer: layers.start + $0) }.min() ?? 0
    }
}
