import CaravanWire
import ClusterSupport
import Foundation
import GGUF
import Logging
import ZeroMQ

/// Pulls the bytes a stage needs from the coordinator's model source (model.proto) into the
/// worker's ``LayerCache``, so the stage then loads from a local (sparse) copy of the model file
/// with the normal GGUF loader.
///
/// Steps: `ModelInfo` (size, where the tensor data starts); the blocks holding the GGUF header,
/// metadata and tensor index; parse it; the blocks holding the stage's tensors
/// (``StageByteRanges``). Blocks already cached with a matching CRC-32C are reused; the rest are
/// requested in chunks of one block, a few in flight (``ChunkSchedule``), each checked (CRC-32C by
/// the codec, offset and size by the schedule) and retried when bad, refused or lost. Progress
/// (MiB done of total, MiB/s) is logged every second.
public final class LayerFetcher: Sendable {
    /// Tuning of the download.
    public struct Settings: Sendable {
        /// Bytes per block and chunk request (capped by the source's `max_chunk_bytes`).
        public var blockSize: UInt64 = 1 << 20
        /// Chunk requests in flight.
        public var window = 4
        /// How long to wait for any reply before the requests in flight count as lost.
        public var requestTimeout: Duration = .seconds(10)
        /// Times one block is requested before the fetch fails.
        public var maxAttempts = 5
        /// Caches of other models unused for this long are removed when a pull starts (nil =
        /// never).
        public var pruneUnusedAfter: TimeInterval? = 14 * 86_400
        /// Default settings.
        public init() {}
    }

    /// What a fetch did.
    public struct Report: Sendable, Equatable {
        /// The cache file the stage loads from.
        public var path: String
        /// Bytes of the blocks the stage needs (header included).
        public var neededBytes: UInt64
        /// Bytes pulled from the coordinator.
        public var downloadedBytes: UInt64
        /// Bytes reused from the cache.
        public var reusedBytes: UInt64
        /// Chunks asked for again.
        public var retries: Int
    }

    private let loop: EventLoop
    private let codec: WireCodec
    private let security: ClusterSecurity
    private let coordinatorPublicKey: String
    private let cacheDirectory: String
    private let settings: Settings
    private let logger: Logger

    /// A fetcher connecting on `loop` (as a CURVE client of the coordinator's key, or plain) and
    /// caching in `cacheDirectory`.
    public init(loop: EventLoop, codec: WireCodec, security: ClusterSecurity, coordinatorPublicKey: String,
                cacheDirectory: String, settings: Settings = Settings(), logger: Logger) {
        self.loop = loop
        self.codec = codec
        self.security = security
        self.coordinatorPublicKey = coordinatorPublicKey
        self.cacheDirectory = cacheDirectory
        self.settings = settings
        self.logger = logger
    }

    /// The default layer cache directory: `$XDG_CACHE_HOME/caravan/layers` or `~/.cache/caravan/layers`.
    public static var defaultCacheDirectory: String { LayerCache.defaultDirectory }

    /// The model source endpoint to connect to: `source` as the coordinator advertised it, with a
    /// wildcard host (`0.0.0.0`, `*`, `[::]`) replaced by the host of `coordinatorEndpoint`.
    public static func resolve(source: String, coordinatorEndpoint: String) -> String {
        for wildcard in ["tcp://0.0.0.0:", "tcp://*:", "tcp://[::]:"] where source.hasPrefix(wildcard) {
            let port = source.dropFirst(wildcard.count)
            guard coordinatorEndpoint.hasPrefix("tcp://"), let colon = coordinatorEndpoint.lastIndex(of: ":"),
                  colon > coordinatorEndpoint.index(coordinatorEndpoint.startIndex, offsetBy: 5) else {
                return "tcp://127.0.0.1:" + port
            }
            var host = String(coordinatorEndpoint[coordinatorEndpoint.index(coordinatorEndpoint.startIndex, offsetBy: 6)..<colon])
            if host == "0.0.0.0" || host == "*" || host == "[::]" { host = "127.0.0.1" }
            return "tcp://" + host + ":" + port
        }
        return source
    }

    /// Makes sure the cache holds every byte the stage of `assignment` reads, pulling what is
    /// missing from `source`; returns the cache file to load from. `heard` is called whenever the
    /// coordinator answers (it is alive).
    public func fetch(_ assignment: StageAssignment, source: String,
                      heard: @Sendable () -> Void = {}) async throws(LayerFetchError) -> Report {
        let socket: AsyncSocket
        do {
            socket = try AsyncSocket(loop: loop, type: .dealer) { s in
                try s.apply(self.security.client(serverKey: self.coordinatorPublicKey))
                try s.set(.linger, 0)
                try s.set(.maxMessageSize, Int64(FrameLimits.modelChunks(self.codec.limits,
                                                                        maxChunkBytes: Int(clamping: self.settings.blockSize))))
                try s.apply(LinkLiveness.cluster)
                try s.connect(source)
            }
        } catch {
            throw LayerFetchError("cannot connect to the model source \(source): \(error)")
        }
        do {
            let report = try await fetch(assignment, socket: socket, source: source, heard: heard)
            await socket.close()
            return report
        } catch {
            await socket.close()
            throw error
        }
    }

    private func fetch(_ a: StageAssignment, socket: AsyncSocket, source: String,
                       heard: @Sendable () -> Void) async throws(LayerFetchError) -> Report {
        let started = ContinuousClock.now
        let info = try await modelInfo(a.modelSHA256, socket: socket, heard: heard)
        guard info.model.sizeBytes == a.modelSize || a.modelSize == 0 else {
            throw LayerFetchError("the model source's \(a.modelSHA256) has \(info.model.sizeBytes) bytes, the assignment says \(a.modelSize)")
        }
        let size = info.model.sizeBytes
        let blockSize = min(settings.blockSize, UInt64(info.maxChunkBytes))
        let cache = try await openCache(sha: a.modelSHA256, size: size, blockSize: blockSize, heard: heard)
        logger.info("pulling layers from the coordinator", metadata: [
            "source": "\(source)", "model": "\(a.modelName)", "layers": "\(a.layers)", "cache": "\(cache.path)",
            "cached_blocks": "\(cache.recordedBlocks)",
        ])
        var totals = Totals(started: started)
        // 1. The GGUF header, metadata and tensor index.
        let header = StageByteRanges.blocks(covering: [0..<info.dataOffset], blockSize: blockSize, fileSize: size)
        try await ensure(header, cache: cache, size: size, blockSize: blockSize, sha: a.modelSHA256,
                         socket: socket, totals: &totals, heard: heard)
        try cache.commit()
        // 2. The stage's tensors.
        let file: GGUFFile
        do {
            file = try GGUFFile(path: cache.path)
        } catch {
            throw LayerFetchError("the pulled GGUF header does not parse: \(error)")
        }
        guard UInt64(file.dataOffset) == info.dataOffset else {
            throw LayerFetchError("the pulled header puts the data at \(file.dataOffset), the source said \(info.dataOffset)")
        }
        let ranges = StageByteRanges.ranges(file: file, layers: a.layers, layerCount: a.modelLayerCount)
        let blocks = StageByteRanges.blocks(covering: ranges, blockSize: blockSize, fileSize: size)
        let rest = blocks.filter { !header.contains($0) }
        try await ensure(rest, cache: cache, size: size, blockSize: blockSize, sha: a.modelSHA256,
                         socket: socket, totals: &totals, heard: heard)
        try cache.commit()
        let elapsed = Self.seconds(ContinuousClock.now - started)
        let report = Report(path: cache.path, neededBytes: totals.downloaded + totals.reused,
                            downloadedBytes: totals.downloaded, reusedBytes: totals.reused, retries: totals.retries)
        logger.info("layers pulled", metadata: [
            "layers": "\(a.layers)", "tensor_bytes": "\(StageByteRanges.byteCount(ranges))",
            "needed_bytes": "\(report.neededBytes)", "downloaded_bytes": "\(report.downloadedBytes)",
            "reused_bytes": "\(report.reusedBytes)", "retries": "\(report.retries)",
            "seconds": "\(String(format: "%.2f", elapsed))",
            "mib_per_s": "\(String(format: "%.1f", Double(report.downloadedBytes) / 1_048_576 / max(elapsed, 1e-3)))",
        ])
        return report
    }

    /// Opens the cache, waiting while another worker on this machine holds it (it is pulling from
    /// the same coordinator, which is therefore alive: `heard` is called while waiting).
    private func openCache(sha: String, size: UInt64, blockSize: UInt64,
                           heard: @Sendable () -> Void) async throws(LayerFetchError) -> LayerCache {
        if let age = settings.pruneUnusedAfter {
            let removed = LayerCache.prune(directory: cacheDirectory, keeping: sha, unusedFor: age)
            if !removed.isEmpty {
                logger.info("removed unused layer caches", metadata: ["models": "\(removed.joined(separator: ", "))"])
            }
        }
        var logged = false
        while true {
            do {
                return try LayerCache(directory: cacheDirectory, sha256: sha, size: size, blockSize: blockSize)
            } catch where error.cacheBusy {
                if !logged {
                    logger.info("waiting for another worker using the layer cache", metadata: ["reason": "\(error)"])
                    logged = true
                }
                heard()
                do {
                    try await Task.sleep(for: .milliseconds(200))
                } catch {
                    throw LayerFetchError("cancelled while waiting for the layer cache")
                }
            }
        }
    }

    private struct Totals {
        let started: ContinuousClock.Instant
        var downloaded: UInt64 = 0
        var reused: UInt64 = 0
        var retries = 0
        /// Request ids of chunk requests start after the model info requests' and never repeat.
        var nextRequestID: UInt64 = 1_000
    }

    /// Requests `ModelInfo` for `sha`, retrying lost requests.
    private func modelInfo(_ sha: String, socket: AsyncSocket,
                           heard: @Sendable () -> Void) async throws(LayerFetchError) -> Caravan_V1_ModelInfo {
        var request = Caravan_V1_ModelInfoRequest()
        request.sha256 = sha
        for attempt in 1...settings.maxAttempts {
            let id = UInt64(attempt)
            do {
                try await socket.send(try codec.encode(.modelInfoRequest(request), requestID: id), timeout: settings.requestTimeout)
            } catch {
                throw LayerFetchError("cannot send to the model source: \(error)")
            }
            let deadline = ContinuousClock.now + settings.requestTimeout
            while ContinuousClock.now < deadline {
                let frames: [Message]
                do {
                    frames = try await socket.receive(timeout: deadline - ContinuousClock.now)
                } catch {
                    if error.isTimeout { break }
                    throw LayerFetchError("the model source socket failed: \(error)")
                }
                heard()
                switch try? codec.decode(frames) {
                case .message(.modelInfo(let m), let rid)? where rid == id:
                    guard m.model.sha256 == sha else { throw LayerFetchError("the model source describes \(m.model.sha256), not \(sha)") }
                    return m
                case .message(.error(let e), let rid)? where rid == id:
                    throw LayerFetchError("the coordinator cannot serve the model \(sha): \(e.code): \(e.message)")
                default:
                    continue  // a late or unrelated reply
                }
            }
            logger.warning("no model info from the coordinator yet", metadata: ["attempt": "\(attempt)"])
        }
        throw LayerFetchError("the model source did not answer \(settings.maxAttempts) model info requests")
    }

    /// Reuses the cached blocks of `blocks` and pulls the others.
    private func ensure(_ blocks: [Int], cache: LayerCache, size: UInt64, blockSize: UInt64, sha: String,
                        socket: AsyncSocket, totals: inout Totals, heard: @Sendable () -> Void) async throws(LayerFetchError) {
        // Reading back a large cached stage takes a while; the coordinator just answered (ModelInfo).
        let (cached, missing) = cache.check(blocks, checked: heard)
        totals.reused += cached.reduce(0) { $0 + UInt64(StageByteRanges.blockBytes($1, blockSize: blockSize, fileSize: size).count) }
        guard !missing.isEmpty else { return }
        let missingBytes = missing.reduce(UInt64(0)) { $0 + UInt64(StageByteRanges.blockBytes($1, blockSize: blockSize, fileSize: size).count) }
        var schedule = ChunkSchedule(blocks: missing, blockSize: blockSize, fileSize: size, window: settings.window,
                                     maxAttempts: settings.maxAttempts, firstRequestID: totals.nextRequestID)
        var request = Caravan_V1_ModelChunkRequest()
        request.sha256 = sha
        let phaseStart = ContinuousClock.now
        var lastLog = phaseStart
        var lastCommit = phaseStart
        while !schedule.isComplete {
            if let failure = schedule.failure { throw LayerFetchError("pulling layers failed: \(failure)") }
            for r in schedule.nextRequests() {
                request.offset = r.offset
                request.length = r.length
                do {
                    try await socket.send(try codec.encode(.modelChunkRequest(request), requestID: r.id), timeout: settings.requestTimeout)
                } catch {
                    schedule.failed(id: r.id, reason: "send failed: \(error)")
                }
            }
            if schedule.inFlightCount == 0 { continue }
            let frames: [Message]
            do {
                frames = try await socket.receive(timeout: settings.requestTimeout)
            } catch {
                guard error.isTimeout else { throw LayerFetchError("the model source socket failed: \(error)") }
                logger.warning("no chunk from the coordinator in \(settings.requestTimeout): asking again",
                               metadata: ["in_flight": "\(schedule.inFlightCount)"])
                schedule.timedOut()
                continue
            }
            heard()
            do {
                switch try codec.decode(frames) {
                case .modelChunk(let chunk, let rid):
                    guard chunk.sha256 == sha else {
                        schedule.failed(id: rid, reason: "a chunk of another model (\(chunk.sha256))")
                        continue
                    }
                    switch schedule.received(id: rid, offset: chunk.offset, count: chunk.count) {
                    case .accept(let block):
                        try chunk.payload.withUnsafeBytes { (bytes) throws(LayerFetchError) in try cache.write(block: block, bytes: bytes) }
                        totals.downloaded += UInt64(chunk.count)
                    case .reject(let reason):
                        logger.warning("dropped a chunk", metadata: ["reason": "\(reason)"])
                    case .ignore:
                        break
                    }
                case .message(.error(let e), let rid):
                    logger.warning("the coordinator refused a chunk", metadata: ["code": "\(e.code)", "reason": "\(e.message)"])
                    schedule.failed(id: rid, reason: "\(e.code): \(e.message)")
                default:
                    logger.warning("model source: ignored an unexpected message")
                }
            } catch let error as LayerFetchError {
                throw error
            } catch {
                logger.warning("model source: dropped a bad chunk", metadata: ["reason": "\(error)"])
                if let rid = ModelChunkData.requestID(of: frames) { schedule.failed(id: rid, reason: "\(error)") }
            }
            let now = ContinuousClock.now
            if now - lastCommit >= .seconds(2) {
                try cache.commit()
                lastCommit = now
            }
            if now - lastLog >= .seconds(1) {
                lastLog = now
                let seconds = Self.seconds(now - phaseStart)
                logger.info("pulling layers", metadata: [
                    "done_mib": "\(String(format: "%.1f", Double(schedule.completedBytes) / 1_048_576))",
                    "total_mib": "\(String(format: "%.1f", Double(missingBytes) / 1_048_576))",
                    "mib_per_s": "\(String(format: "%.1f", Double(schedule.completedBytes) / 1_048_576 / max(seconds, 1e-3)))",
                ])
            }
        }
        totals.retries += schedule.retries
        totals.nextRequestID = schedule.nextRequestID
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
