/// Why a frame (or a message to encode) was rejected. `description` is the logged reason.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A message must be one protobuf frame, plus one payload frame for activations.
    case frameCount(Int)
    /// The protobuf frame is larger than the configured limit.
    case headerTooLarge(bytes: Int, limit: Int)
    /// The protobuf frame could not be parsed (garbage or truncated bytes).
    case malformed(String)
    /// The envelope's protocol version is not one this build speaks.
    case unsupportedVersion(UInt32)
    /// A required field is absent or empty; the associated value names it.
    case missingField(String)
    /// A field has a value that is not allowed.
    case invalidField(String, reason: String)
    /// The tensor's dtype is unspecified or unknown (raw enum value).
    case unknownDType(Int)
    /// The tensor's shape is empty, has a zero dimension, too many dimensions or elements, or does
    /// not match the sequence entries.
    case invalidShape(String)
    /// `byte_length` differs from element count times dtype size.
    case lengthMismatch(declared: UInt64, expected: UInt64)
    /// The payload frame's size differs from `byte_length`.
    case payloadSizeMismatch(declared: UInt64, actual: Int)
    /// The payload's CRC-32C differs from the header's.
    case checksumMismatch(declared: UInt32, actual: UInt32)
    /// The payload is larger than the configured limit.
    case payloadTooLarge(bytes: UInt64, limit: Int)
    /// The header describes a tensor but no payload frame followed.
    case missingPayload
    /// A payload frame came with a message that has no tensor.
    case unexpectedPayload
    /// Serializing a message failed.
    case encodingFailed(String)

    /// The reason, for logs.
    public var description: String {
        switch self {
        case .frameCount(let n): "expected 1 protobuf frame (+1 payload frame for activations), got \(n) frames"
        case .headerTooLarge(let bytes, let limit): "protobuf frame of \(bytes) bytes exceeds the limit of \(limit)"
        case .malformed(let why): "malformed protobuf frame: \(why)"
        case .unsupportedVersion(let v): "unsupported protocol version \(v) (supported: \(WireProtocol.supportedVersions.sorted()))"
        case .missingField(let name): "missing required field \(name)"
        case .invalidField(let name, let reason): "invalid field \(name): \(reason)"
        case .unknownDType(let raw): "unknown tensor dtype \(raw)"
        case .invalidShape(let why): "invalid tensor shape: \(why)"
        case .lengthMismatch(let declared, let expected):
            "tensor byte_length \(declared) does not match its shape and dtype (\(expected) bytes)"
        case .payloadSizeMismatch(let declared, let actual):
            "payload frame has \(actual) bytes but the header declares \(declared)"
        case .checksumMismatch(let declared, let actual):
            "payload CRC-32C mismatch: header says \(hex(declared)), payload has \(hex(actual))"
        case .payloadTooLarge(let bytes, let limit): "tensor payload of \(bytes) bytes exceeds the limit of \(limit)"
        case .missingPayload: "the header describes a tensor but no payload frame followed"
        case .unexpectedPayload: "a payload frame came with a message that has no tensor"
        case .encodingFailed(let why): "could not encode message: \(why)"
        }
    }
}

private func hex(_ v: UInt32) -> String {
    let digits = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}

/// Protocol versions.
public enum WireProtocol {
    /// The version this build sends (the `.proto` files under `Protos/caravan/v1`).
    public static let version: UInt32 = 1
    /// Versions this build accepts.
    public static let supportedVersions: Set<UInt32> = [1]
}

/// Size limits applied when decoding (and encoding) frames.
public struct WireLimits: Sendable, Equatable {
    /// Largest protobuf frame, bytes.
    public var maxHeaderBytes: Int
    /// Largest tensor payload, bytes.
    public var maxPayloadBytes: Int
    /// Most tensor dimensions.
    public var maxRank: Int
    /// Most sequence entries (rows) in one step.
    public var maxRows: Int

    /// Limits with defaults suited to activations of LLaMA-family models.
    public init(maxHeaderBytes: Int = 1 << 20, maxPayloadBytes: Int = 256 << 20, maxRank: Int = 4, maxRows: Int = 1 << 16) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxPayloadBytes = maxPayloadBytes
        self.maxRank = maxRank
        self.maxRows = maxRows
    }
}
