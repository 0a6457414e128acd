import Foundation
import SwiftProtobuf
import ZeroMQ

/// A decoded, validated inbound message.
public enum Inbound: Sendable {
    /// A pipeline step (header + payload), ready for the next stage's kernels.
    case activation(ActivationStep, requestID: UInt64)
    /// A step result from the last stage.
    case stepResult(StepOutcome, requestID: UInt64)
    /// Any other message (control, jobs, admin), with its required fields checked.
    case message(Caravan_V1_Envelope.OneOf_Body, requestID: UInt64)
    /// Bytes of a model file (header + payload) from the coordinator's model source.
    case modelChunk(ModelChunkData, requestID: UInt64)
    /// Keys and values mirrored from a stage to the worker keeping a standby copy of its layers
    /// (header + payload).
    case kvRows(KVRowsData, requestID: UInt64)
}

/// Turns messages into ZeroMQ frames and back. The only place where frames are decoded: every
/// inbound frame goes through ``decode(_:)``, which validates it fully and throws a ``WireError``
/// whose description is the reason to log.
///
/// Layout: frame 1 is a protobuf `caravan.v1.Envelope`; an activation (or a step result with
/// logits) adds frame 2, the raw tensor payload, sent without copying (``FrameBuffer``) and read in place on receipt.
public struct WireCodec: Sendable {
    /// Size limits applied in both directions.
    public var limits: WireLimits

    /// A codec with `limits`.
    public init(limits: WireLimits = WireLimits()) {
        self.limits = limits
    }

    // MARK: Encoding

    /// Encodes a control, job or admin message as one frame. Activations and step results go
    /// through ``encode(_:requestID:)-(ActivationStep,_)`` and ``encode(_:requestID:)-(StepOutcome,_)``.
    public func encode(_ body: Caravan_V1_Envelope.OneOf_Body, requestID: UInt64 = 0) throws(WireError) -> [ZeroMQ.Message] {
        switch body {
        case .activation: throw .invalidField("body", reason: "encode activations with encode(ActivationStep)")
        case .stepResult(let r): return try encode(StepOutcome(wire: r), requestID: requestID)
        case .modelChunk: throw .invalidField("body", reason: "encode model chunks with encode(ModelChunkData)")
        case .kvRows: throw .invalidField("body", reason: "encode KV rows with encode(KVRowsData)")
        default: break
        }
        try MessageRules.validate(body)
        return [ZeroMQ.Message(try envelopeBytes(body, requestID: requestID))]
    }

    /// Encodes a step as a header frame plus (when it has a tensor) the payload frame, zero-copy.
    public func encode(_ step: ActivationStep, requestID: UInt64 = 0) throws(WireError) -> [ZeroMQ.Message] {
        let header = try step.wireHeader(limits: limits)
        let headerFrame = ZeroMQ.Message(try envelopeBytes(.activation(header), requestID: requestID))
        guard let tensor = step.tensor else { return [headerFrame] }
        return [headerFrame, tensor.storage.message()]
    }

    /// Encodes a step result as one frame, plus the logits payload frame (zero-copy) when it has logits.
    public func encode(_ outcome: StepOutcome, requestID: UInt64 = 0) throws(WireError) -> [ZeroMQ.Message] {
        if let logits = outcome.logits, logits.byteCount > limits.maxPayloadBytes {
            throw .payloadTooLarge(bytes: UInt64(logits.byteCount), limit: limits.maxPayloadBytes)
        }
        let header = ZeroMQ.Message(try envelopeBytes(.stepResult(try outcome.wire()), requestID: requestID))
        guard let logits = outcome.logits else { return [header] }
        return [header, logits.storage.message()]
    }

    /// The envelope frame carrying `body`, within the header limit.
    func envelopeBytes(_ body: Caravan_V1_Envelope.OneOf_Body, requestID: UInt64) throws(WireError) -> [UInt8] {
        var envelope = Caravan_V1_Envelope()
        envelope.protocolVersion = WireProtocol.version
        envelope.requestID = requestID
        envelope.body = body
        let bytes: [UInt8]
        do {
            bytes = try envelope.serializedBytes()
        } catch {
            throw .encodingFailed(String(describing: error))
        }
        guard bytes.count <= limits.maxHeaderBytes else {
            throw .headerTooLarge(bytes: bytes.count, limit: limits.maxHeaderBytes)
        }
        return bytes
    }

    // MARK: Decoding

    /// Decodes a message received on a ROUTER socket: the first frame is the sender's routing id,
    /// the rest is decoded with ``decode(_:)``.
    public func decodeRouted(_ frames: [ZeroMQ.Message]) throws(WireError) -> (routingID: [UInt8], message: Inbound) {
        guard let first = frames.first else { throw .frameCount(0) }
        return (first.bytes, try decode(Array(frames.dropFirst())))
    }

    /// Decodes and validates one received message (routing-id frames already removed).
    public func decode(_ frames: [ZeroMQ.Message]) throws(WireError) -> Inbound {
        guard frames.count == 1 || frames.count == 2 else { throw .frameCount(frames.count) }
        let header = frames[0]
        let payload = frames.count == 2 ? frames[1] : nil
        guard header.count <= limits.maxHeaderBytes else {
            throw .headerTooLarge(bytes: header.count, limit: limits.maxHeaderBytes)
        }
        let envelope: Caravan_V1_Envelope
        do {
            envelope = try Caravan_V1_Envelope(serializedBytes: header.bytes)
        } catch {
            throw .malformed(String(describing: error))
        }
        guard envelope.protocolVersion != 0 else { throw .missingField("envelope.protocol_version") }
        guard WireProtocol.supportedVersions.contains(envelope.protocolVersion) else {
            throw .unsupportedVersion(envelope.protocolVersion)
        }
        guard let body = envelope.body else { throw .missingField("envelope.body") }
        switch body {
        case .activation(let activation):
            let step = try ActivationStep(wire: activation, payload: payload, limits: limits)
            return .activation(step, requestID: envelope.requestID)
        case .stepResult(let result):
            return .stepResult(try StepOutcome(wire: result, payload: payload, limits: limits), requestID: envelope.requestID)
        case .modelChunk(let chunk):
            return .modelChunk(try ModelChunkData(wire: chunk, payload: payload, limits: limits), requestID: envelope.requestID)
        case .kvRows(let rows):
            return .kvRows(try KVRowsData(wire: rows, payload: payload, limits: limits), requestID: envelope.requestID)
        default:
            guard payload == nil else { throw .unexpectedPayload }
            try MessageRules.validate(body)
            return .message(body, requestID: envelope.requestID)
        }
    }
}
