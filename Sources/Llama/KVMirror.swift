import CaravanCore

/// Why a ``KVMirror`` refused rows.
public enum KVMirrorRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    /// The rows belong to another plan than the mirror's.
    case otherEpoch(UInt64, mirror: UInt64)
    /// The layers are not all among the mirrored ones.
    case layersNotMirrored(LayerRange)
    /// The rows' KV width is not the model's.
    case kvDimension(Int, expected: Int)
    /// The payload is not `layers x 2 x count x kvDimension` halfs.
    case payloadSize(Int, expected: Int)
    /// The rows end beyond the context.
    case beyondContext(end: Int, limit: Int)
    /// The rows start after what the mirror holds of a layer (rows before them never came).
    case gap(layer: Int, position: Int, held: Int)
    /// Keeping them would exceed the mirror's bound.
    case full(limit: Int)

    public var description: String {
        switch self {
        case let .otherEpoch(e, m): "rows of plan epoch \(e), the mirror is for epoch \(m)"
        case let .layersNotMirrored(r): "layers \(r) are not mirrored here"
        case let .kvDimension(d, e): "rows of \(d) halfs, the model's are \(e)"
        case let .payloadSize(n, e): "payload of \(n) bytes, expected \(e)"
        case let .beyondContext(end, limit): "rows up to position \(end) exceed the context of \(limit)"
        case let .gap(layer, position, held): "rows of layer \(layer) from position \(position), only \(held) held"
        case let .full(limit): "the mirror holds its bound of \(limit) layer-positions"
        }
    }
}

/// Keys and values of other stages' layers, as their owners streamed them here (the worker keeps
/// standby copies of those layers): per sequence and layer, F16 keys and values of positions
/// `[0, length)`, exactly the owner's cache rows. After a re-plan that gives this worker those
/// layers, its new stage adopts them (``LlamaStage/continueSequences(_:from:mirror:)``) instead of
/// recomputing them.
///
/// For one plan epoch; rows of another are refused, so a stale plan's rows are never mixed in.
/// Bounded whoever sends: at most `limit` layer-positions (the plan's context x sequences x the
/// mirrored layers) are held; rows beyond it are refused. Not thread-safe (one owner).
public final class KVMirror: @unchecked Sendable {
    /// One layer of one sequence: keys then values, `length * kvDimension` halfs each.
    private struct LayerRows {
        var keys: [UInt16] = []
        var values: [UInt16] = []
        var length = 0
    }

    /// The plan the mirrored rows belong to.
    public let epoch: UInt64
    /// The mirrored layers (model numbering), ascending and disjoint.
    public let ranges: [LayerRange]
    /// Halfs per key row.
    public let kvDimension: Int
    /// Most positions per sequence.
    public let contextLimit: Int
    /// Most layer-positions held over all sequences.
    public let limit: Int
    /// Layer-positions held now.
    public private(set) var heldLayerPositions = 0
    private var rows: [SequenceID: [Int: LayerRows]] = [:]

    /// A mirror for the plan of `epoch` of `ranges`, bounded by `contextLimit` x `sequences`
    /// positions for each mirrored layer.
    public init(epoch: UInt64, ranges: [LayerRange], kvDimension: Int, contextLimit: Int, sequences: Int) {
        self.epoch = epoch
        self.ranges = ranges
        self.kvDimension = kvDimension
        self.contextLimit = contextLimit
        let layers = ranges.reduce(0) { $0 + $1.count }
        self.limit = CheckedArithmetic.product(UInt64(max(0, contextLimit)), UInt64(max(0, sequences)), UInt64(layers))
            .map { Int(clamping: $0) } ?? Int.max
    }

    /// Bytes the held rows take (keys and values).
    public var byteCount: Int { heldLayerPositions * kvDimension * 2 * 2 }

    /// Sequences with rows.
    public var sequences: [SequenceID] { Array(rows.keys) }

    /// Whether every layer of `layers` is mirrored.
    public func mirrors(_ layers: LayerRange) -> Bool {
        ranges.contains { $0.start <= layers.start && layers.end <= $0.end }
    }

    /// Positions of `layer` held for `sequence`.
    public func length(of sequence: SequenceID, layer: Int) -> Int { rows[sequence]?[layer]?.length ?? 0 }

    /// Keeps rows of `sequence` at `[position, position + count)` for `layers` (`payload`:
    /// `[layers][2][count][kvDimension]` halfs), replacing what was held from `position` on.
    public func accept(epoch: UInt64, sequence: SequenceID, position: Int, count: Int, layers: LayerRange,
                       kvDimension: Int, payload: UnsafeRawBufferPointer) throws(KVMirrorRefusal) {
        guard epoch == self.epoch else { throw .otherEpoch(epoch, mirror: self.epoch) }
        guard mirrors(layers) else { throw .layersNotMirrored(layers) }
        guard kvDimension == self.kvDimension else { throw .kvDimension(kvDimension, expected: self.kvDimension) }
        let expected = layers.count * 2 * count * kvDimension * 2
        guard count > 0, payload.count == expected else { throw .payloadSize(payload.count, expected: expected) }
        guard position >= 0, position + count <= contextLimit else { throw .beyondContext(end: position + count, limit: contextLimit) }
        var held = rows[sequence] ?? [:]
        var grows = 0
        for l in layers.layers {
            let length = held[l]?.length ?? 0
            guard position <= length else { throw .gap(layer: l, position: position, held: length) }
            grows += position + count - length
        }
        guard heldLayerPositions + grows <= limit else { throw .full(limit: limit) }
        let halfs = payload.bindMemory(to: UInt16.self)
        let rowHalfs = count * kvDimension
        for (i, l) in layers.layers.enumerated() {
            var r = held[l] ?? LayerRows()
            r.keys.removeSubrange((position * kvDimension)...)
            r.values.removeSubrange((position * kvDimension)...)
            let base = i * 2 * rowHalfs
            r.keys.append(contentsOf: halfs[base..<(base + rowHalfs)])
            r.values.append(contentsOf: halfs[(base + rowHalfs)..<(base + 2 * rowHalfs)])
            r.length = position + count
            held[l] = r
        }
        heldLayerPositions += grows
        rows[sequence] = held
    }

    /// Drops the rows of `sequences`.
    public func release(_ sequences: [SequenceID]) {
        for id in sequences {
            guard let held = rows.removeValue(forKey: id) else { continue }
            heldLayerPositions -= held.values.reduce(0) { $0 + $1.length }
        }
    }

    /// Copies positions `[0, count)` of `layer` of `sequence` into `keys` and `values`
    /// (`count * kvDimension` halfs each); `count` must be at most what is held.
    func copy(_ sequence: SequenceID, layer: Int, count: Int, keys: UnsafeMutablePointer<UInt16>,
              values: UnsafeMutablePointer<UInt16>) {
        let r = rows[sequence]![layer]!
        precondition(count <= r.length, "mirrored rows held")
        r.keys.withUnsafeBufferPointer { keys.update(from: $0.baseAddress!, count: count * kvDimension) }
        r.values.withUnsafeBufferPointer { values.update(from: $0.baseAddress!, count: count * kvDimension) }
    }
}
