import CaravanWire
import CaravanCore
import CaravanTransport
import Fingerprint
import GGUF
import Logging
import ZeroMQ

/// Why a model chunk request is refused.
public struct ChunkRequestRefusal: Error, Equatable, CustomStringConvertible, Sendable {
    /// `ErrorReply.code`: "not_found" (another model) or "invalid_request" (a bad range).
    public let code: String
    /// The reason, sent back and logged.
    public let description: String
}

/// The coordinator's model source (model.proto): serves byte ranges of its model file to workers
/// that hold no copy, on its own ROUTER socket so that chunk traffic never waits behind (or
/// delays) the control plane. Requests are answered one at a time from the mapped file; every
/// request is checked first (only the served model's hash, only ranges inside the file, at most
/// ``maxChunkBytes``), and a refused or undecodable one never stops the server.
public final class ModelServer: Sendable {
    /// Largest chunk served, bytes.
    public static let maxChunkBytes = 4 << 20

    private let socket: AsyncSocket
    private let file: GGUFFile
    private let fingerprint: ModelFingerprint
    private let layerCount: Int
    private let codec: WireCodec
    private let logger: Logger
    /// Lines a peer can cause, within a budget (``LogLimiter``).
    private let limited: LogLimiter
    /// The address workers are told (RegisterAck.model_source_address).
    public let address: String
    private let served = LockedValue<(chunks: Int, bytes: UInt64)>((0, 0))
    private let access: AccessList?
    private let isRegisteredWorker: @Sendable (String) -> Bool

    /// Binds a ROUTER on `endpoint` (port `*` = any free port) on `loop` with `security`, serving
    /// `file` (whose content hash is `fingerprint`). With an `access` list (CURVE), only worker
    /// keys connect, and a request is answered only when `isRegisteredWorker` says its key
    /// belongs to a registered worker.
    public init(loop: EventLoop, endpoint: String, security: ClusterSecurity, file: GGUFFile, fingerprint: ModelFingerprint,
                layerCount: Int, codec: WireCodec, logger: Logger, access: AccessList? = nil,
                isRegisteredWorker: @escaping @Sendable (String) -> Bool = { _ in true }) async throws {
        self.access = access
        self.isRegisteredWorker = isRegisteredWorker
        socket = try AsyncSocket(loop: loop, type: .router) { s in
            try s.apply(security.server)
            if access != nil { try s.set(.zapDomain, Array(CoordinatorSocketDomain.modelSource.rawValue.utf8)) }
            // A peer that asks without reading fills only a short queue (then replies to it are
            // dropped), never the coordinator's memory.
            try s.set(.sendHighWaterMark, 32)
            // Requests are a few hundred bytes: a bigger frame is dropped while it is read.
            try s.set(.maxMessageSize, Int64(FrameLimits.modelSource(codec.limits)))
            try s.bind(endpoint)
        }
        address = try await socket.withSocket { s throws(ZMQError) in try s.lastEndpoint }
        self.file = file
        self.fingerprint = fingerprint
        self.layerCount = layerCount
        self.codec = codec
        self.logger = logger
        self.limited = LogLimiter(logger: logger)
        logger.info("model source", metadata: ["model_source": "\(address)", "max_chunk_bytes": "\(Self.maxChunkBytes)"])
    }

    /// Checks a chunk request against the served model (`sha256`, `fileSize` bytes); returns the
    /// byte range to send.
    public static func check(_ request: Caravan_V1_ModelChunkRequest, sha256: String, fileSize: UInt64,
                             maxChunkBytes: Int = ModelServer.maxChunkBytes) -> Result<Range<UInt64>, ChunkRequestRefusal> {
        guard request.sha256 == sha256 else {
            return .failure(ChunkRequestRefusal(code: "not_found", description: "this coordinator serves the model \(sha256), not \(request.sha256)"))
        }
        guard request.length > 0, Int(request.length) <= maxChunkBytes else {
            return .failure(ChunkRequestRefusal(code: "invalid_request", description: "length \(request.length) is not within 1...\(maxChunkBytes)"))
        }
        let (end, overflow) = request.offset.addingReportingOverflow(UInt64(request.length))
        guard !overflow, end <= fileSize else {
            return .failure(ChunkRequestRefusal(code: "invalid_request",
                                                description: "bytes [\(request.offset), +\(request.length)) are not inside the \(fileSize)-byte model file"))
        }
        return .success(request.offset..<end)
    }

    /// Serves requests until the socket closes or the task is cancelled.
    public func run() async {
        do {
            for try await frames in socket.messages() { await handle(frames) }
        } catch {
            logger.error("model source socket failed", metadata: ["reason": "\(error)"])
        }
        let totals = served.withLock { $0 }
        logger.info("model source stopped", metadata: ["chunks": "\(totals.chunks)", "bytes": "\(totals.bytes)"])
    }

    /// Closes the socket.
    public func close() async { await socket.close() }

    /// Answers one request (routing id first).
    func handle(_ frames: [Message]) async {
        guard frames.count >= 2 else { return }
        let peer = frames[0]
        let body: Caravan_V1_Envelope.OneOf_Body
        let requestID: UInt64
        do {
            guard case .message(let b, let id) = try codec.decode(Array(frames.dropFirst())) else {
                limited.warning("model source: dropped a message that is not a request", key: Self.key(of: frames))
                return
            }
            body = b
            requestID = id
        } catch {
            limited.warning("model source: dropped a bad frame", key: Self.key(of: frames), metadata: ["reason": "\(error)"])
            await reply([peer] + ((try? codec.encode(.error(.with { $0.code = "invalid_message"; $0.message = "\(error)" }))) ?? []))
            return
        }
        if access != nil {
            let caller = AccessList.caller(of: frames, access: access)
            guard caller.roles.contains(.worker), isRegisteredWorker(caller.key) else {
                await refuse(ChunkRequestRefusal(code: "forbidden", description: "the model source serves registered workers only"),
                             to: peer, requestID: requestID)
                return
            }
        }
        switch body {
        case .modelInfoRequest(let m):
            guard m.sha256 == fingerprint.sha256 else {
                await refuse(ChunkRequestRefusal(code: "not_found", description: "this coordinator serves the model \(fingerprint.sha256), not \(m.sha256)"),
                             to: peer, requestID: requestID)
                return
            }
            var info = Caravan_V1_ModelInfo()
            info.model.name = fingerprint.name
            info.model.sha256 = fingerprint.sha256
            info.model.sizeBytes = fingerprint.size
            info.model.layerCount = UInt32(clamping: layerCount)
            info.dataOffset = UInt64(file.dataOffset)
            info.maxChunkBytes = UInt32(Self.maxChunkBytes)
            limited.info("a worker is pulling model bytes", key: Self.key(of: frames), metadata: ["peer": "\(PeerID(peer.bytes))"])
            await reply([peer] + ((try? codec.encode(.modelInfo(info), requestID: requestID)) ?? []))
        case .modelChunkRequest(let m):
            switch Self.check(m, sha256: fingerprint.sha256, fileSize: UInt64(file.fileSize)) {
            case .failure(let refusal):
                await refuse(refusal, to: peer, requestID: requestID)
            case .success(let range):
                guard let bytes = file.fileBytes(offset: Int(range.lowerBound), count: range.count) else {
                    await refuse(ChunkRequestRefusal(code: "invalid_request", description: "bytes outside the file"), to: peer, requestID: requestID)
                    return
                }
                // Sent from the mapping itself (no copy); the file stays mapped until libzmq is done.
                let payload = Message(borrowing: bytes, owner: file)
                do {
                    let frames = try codec.encode(ModelChunkData(sha256: fingerprint.sha256, offset: range.lowerBound, payload: payload),
                                                  requestID: requestID)
                    await reply([peer] + frames)
                    served.withLock { $0 = ($0.chunks + 1, $0.bytes + UInt64(range.count)) }
                    CoordinatorMetrics.modelBytesServed.increment(by: range.count)
                } catch {
                    logger.error("model source: cannot encode a chunk", metadata: ["reason": "\(error)"])
                }
            }
        default:
            limited.warning("model source: ignored an unexpected message kind", key: Self.key(of: frames))
            await reply([peer] + ((try? codec.encode(.error(.with { $0.code = "invalid_message"; $0.message = "not a model request" }),
                                                     requestID: requestID)) ?? []))
        }
    }

    /// Who sent `frames`, for the log budget: the proven key when there is one, else the routing id.
    private static func key(of frames: [Message]) -> String {
        frames.dropFirst().first?.userID ?? frames.first.map { "\(PeerID($0.bytes))" } ?? ""
    }

    private func refuse(_ refusal: ChunkRequestRefusal, to peer: Message, requestID: UInt64) async {
        limited.warning("model source: refused a request", key: "\(PeerID(peer.bytes))",
                        metadata: ["code": "\(refusal.code)", "reason": "\(refusal.description)"])
        var e = Caravan_V1_ErrorReply()
        e.code = refusal.code
        e.message = refusal.description
        await reply([peer] + ((try? codec.encode(.error(e), requestID: requestID)) ?? []))
    }

    private func reply(_ frames: [Message]) async {
        guard frames.count >= 2 else { return }
        do {
            try await socket.send(frames, timeout: .seconds(5))
        } catch {
            limited.warning("model source: could not answer", metadata: ["reason": "\(error)"])
        }
    }
}
