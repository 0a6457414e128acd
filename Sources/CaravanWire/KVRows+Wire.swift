import CaravanCore
import SwiftProtobuf
import ZeroMQ

/// Keys and values a stage appended for some of its layers, streamed to the worker that keeps a
/// standby copy of those layers (a `KVRows` header frame plus the F16 payload, read in place):
/// positions `[position, position + count)` of one sequence, laid out
/// `[layers][2 (keys, values)][count][kvDimension]` halfs.
///
/// A received one has passed ``WireCodec/decode(_:)``: a non-empty layer range and count, the
/// payload present, exactly that many halfs, within the payload limit, and its CRC-32C matches.
public struct KVRowsData: Sendable {
    /// The plan the owner runs.
    public let planEpoch: UInt64
    /// The sequence.
    public let sequence: SequenceID
    /// First position.
    public let position: Int
    /// Number of positions.
    public let count: Int
    /// The layers (model numbering).
    public let layers: LayerRange
    /// Halfs per key row (KV heads x head dimension).
    public let kvDimension: Int
    /// The F16 values.
    public let payload: ZeroMQ.Message

    /// Rows of `sequence` at `[position, position + count)` for `layers`, whose `payload` holds
    /// `layers.count * 2 * count * kvDimension` halfs.
    public init(planEpoch: UInt64, sequence: SequenceID, position: Int, count: Int, layers: LayerRange, kvDimension: Int,
                payload: ZeroMQ.Message) {
        self.planEpoch = planEpoch
        self.sequence = sequence
        self.position = position
        self.count = count
        self.layers = layers
        self.kvDimension = kvDimension
        self.payload = payload
    }

    /// Payload bytes for `layers` layers, `count` positions of `kvDimension` halfs (nil on overflow).
    public static func byteCount(layers: Int, count: Int, kvDimension: Int) -> Int? {
        CheckedArithmetic.product(UInt64(max(0, layers)), 2, UInt64(max(0, count)), UInt64(max(0, kvDimension)), 2)
            .flatMap { $0 <= UInt64(Int.max) ? Int($0) : nil }
    }

    /// Validates a received header and its payload frame.
    public init(wire m: Caravan_V1_KVRows, payload: ZeroMQ.Message?, limits: WireLimits) throws(WireError) {
        guard m.planEpoch > 0 else { throw .missingField("kv_rows.plan_epoch") }
        guard m.count > 0 else { throw .missingField("kv_rows.count") }
        guard m.kvDimension > 0 else { throw .missingField("kv_rows.kv_dimension") }
        guard let layers = LayerRange(Int(m.layerStart), Int(m.layerEnd)) else {
            throw .invalidField("kv_rows.layer_end", reason: "empty layer range [\(m.layerStart), \(m.layerEnd))")
        }
        let (_, overflow) = m.position.addingReportingOverflow(m.count)
        guard !overflow else { throw .invalidField("kv_rows.position", reason: "position + count overflows") }
        guard let bytes = Self.byteCount(layers: layers.count, count: Int(m.count), kvDimension: Int(m.kvDimension)),
              bytes <= limits.maxPayloadBytes else {
            throw .invalidField("kv_rows.count", reason: "the rows exceed the payload limit of \(limits.maxPayloadBytes) bytes")
        }
        guard let payload else { throw .missingPayload }
        guard payload.count == bytes else { throw .payloadSizeMismatch(declared: UInt64(bytes), actual: payload.count) }
        let actual = payload.withUnsafeBytes { CRC32C.checksum($0) }
        guard actual == m.crc32C else { throw .checksumMismatch(declared: m.crc32C, actual: actual) }
        self.init(planEpoch: m.planEpoch, sequence: SequenceID(m.sequenceID), position: Int(m.position), count: Int(m.count),
                  layers: layers, kvDimension: Int(m.kvDimension), payload: payload)
    }

    /// The header describing these rows, with the CRC-32C of the payload.
    public var wireHeader: Caravan_V1_KVRows {
        var m = Caravan_V1_KVRows()
        m.planEpoch = planEpoch
        m.sequenceID = sequence.rawValue
        m.position = UInt32(clamping: position)
        m.count = UInt32(clamping: count)
        m.layerStart = UInt32(clamping: layers.start)
        m.layerEnd = UInt32(clamping: layers.end)
        m.kvDimension = UInt32(clamping: kvDimension)
        m.crc32C = payload.withUnsafeBytes { CRC32C.checksum($0) }
        return m
    }
}

extension WireCodec {
    /// Encodes KV rows as their header frame plus the payload frame (shared, not copied).
    public func encode(_ rows: KVRowsData, requestID: UInt64 = 0) throws(WireError) -> [ZeroMQ.Message] {
        guard let bytes = KVRowsData.byteCount(layers: rows.layers.count, count: rows.count, kvDimension: rows.kvDimension),
              bytes == rows.payload.count, rows.count > 0 else {
            throw .invalidField("kv_rows.count", reason: "the payload does not hold \(rows.count) positions of \(rows.layers)")
        }
        guard bytes <= limits.maxPayloadBytes else { throw .payloadTooLarge(bytes: UInt64(bytes), limit: limits.maxPayloadBytes) }
        return [ZeroMQ.Message(try envelopeBytes(.kvRows(rows.wireHeader), requestID: requestID)), rows.payload]
    }
}
