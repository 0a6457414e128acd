import SwiftProtobuf
import ZeroMQ

/// Bytes `[offset, offset + count)` of a model file, as the coordinator's model source sends them:
/// a `ModelChunk` header frame plus the raw bytes as a payload frame (read in place, not copied).
///
/// A received chunk has passed ``WireCodec/decode(_:)``: the hash is well formed, the payload is
/// present, exactly `length` bytes, within the payload limit, and its CRC-32C matches.
public struct ModelChunkData: Sendable {
    /// SHA-256 of the model file the bytes belong to.
    public let sha256: String
    /// Offset of the first byte in the file.
    public let offset: UInt64
    /// The bytes.
    public let payload: ZeroMQ.Message
    /// The CRC-32C of the payload: verified against the bytes when the chunk was received
    /// (so a receiver need not compute it again), or given by the sender; nil = not computed yet.
    public let checksum: UInt32?

    /// Number of bytes.
    public var count: Int { payload.count }

    /// A chunk of `payload` at `offset` of the model `sha256`; `checksum`, when given, must be the
    /// payload's CRC-32C (nil: computed when encoded).
    public init(sha256: String, offset: UInt64, payload: ZeroMQ.Message, checksum: UInt32? = nil) {
        self.sha256 = sha256
        self.offset = offset
        self.payload = payload
        self.checksum = checksum
    }

    /// The header describing this chunk, with the CRC-32C of its bytes.
    public var wireHeader: Caravan_V1_ModelChunk {
        var m = Caravan_V1_ModelChunk()
        m.sha256 = sha256
        m.offset = offset
        m.length = UInt32(clamping: payload.count)
        m.crc32C = checksum ?? payload.withUnsafeBytes { CRC32C.checksum($0) }
        return m
    }

    /// Validates a received header and its payload frame.
    public init(wire m: Caravan_V1_ModelChunk, payload: ZeroMQ.Message?, limits: WireLimits) throws(WireError) {
        try MessageRules.sha256(m.sha256, "model_chunk.sha256")
        guard m.length > 0 else { throw .missingField("model_chunk.length") }
        guard Int(m.length) <= limits.maxPayloadBytes else {
            throw .payloadTooLarge(bytes: UInt64(m.length), limit: limits.maxPayloadBytes)
        }
        let (_, overflow) = m.offset.addingReportingOverflow(UInt64(m.length))
        guard !overflow else { throw .invalidField("model_chunk.offset", reason: "offset + length overflows") }
        guard let payload else { throw .missingPayload }
        guard payload.count == Int(m.length) else {
            throw .payloadSizeMismatch(declared: UInt64(m.length), actual: payload.count)
        }
        let actual = payload.withUnsafeBytes { CRC32C.checksum($0) }
        guard actual == m.crc32C else { throw .checksumMismatch(declared: m.crc32C, actual: actual) }
        self.init(sha256: m.sha256, offset: m.offset, payload: payload, checksum: actual)
    }
}

extension WireCodec {
    /// Encodes a model chunk as its header frame plus the payload frame (shared, not copied).
    public func encode(_ chunk: ModelChunkData, requestID: UInt64 = 0) throws(WireError) -> [ZeroMQ.Message] {
        guard chunk.count > 0 else { throw .missingField("model_chunk.length") }
        guard chunk.count <= limits.maxPayloadBytes, chunk.count <= Int(UInt32.max) else {
            throw .payloadTooLarge(bytes: UInt64(chunk.count), limit: limits.maxPayloadBytes)
        }
        return [ZeroMQ.Message(try envelopeBytes(.modelChunk(chunk.wireHeader), requestID: requestID)), chunk.payload]
    }
}

extension ModelChunkData {
    /// The envelope's `request_id` of a received model chunk that failed validation (so the
    /// requester can ask again at once), or nil when the frames do not hold a model chunk header.
    public static func requestID(of frames: [ZeroMQ.Message]) -> UInt64? {
        guard let first = frames.first, first.count <= 1 << 20,
              let envelope = try? Caravan_V1_Envelope(serializedBytes: first.bytes),
              case .modelChunk? = envelope.body else { return nil }
        return envelope.requestID
    }
}
