import CaravanCore
import CaravanWire
import CaravanTransport
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
/// requested in chunks of one block over two connections (their CURVE work runs on two of
/// libzmq's I/O threads), a window of them in flight (``ChunkSchedule``) so the link never waits
/// for a round trip, each checked (CRC-32C by the codec, offset and size by the
/// schedule) and retried when bad, refused or lost. Progress (bytes done of total, recent rate,
/// time left) is logged every few seconds and readable in ``progress`` (for heartbeats).
public final class LayerFetcher: Sendable {
    /// Tuning of the download.
    public struct Settings: Sendable {
        /// Bytes per block and chunk request (capped by the source's `max_chunk_bytes`).
        public var blockSize: UInt64 = 1 << 20
        /// Chunk requests in flight: enough blocks to cover the link's bandwidth × round trip
        /// (16 MiB in flight at 1 MiB blocks; the coordinator sends them as fast as CURVE allows).
        public var window = 16
        /// Connections to the model source, the requests spread over them. With CURVE every byte
        /// is encrypted and decrypted by libzmq's I/O thread of its connection: two connections
        /// (each daemon runs two I/O threads) let two cores do it.
        public var connections = 2
        /// Seconds between progress lines in the log.
        public var logInterval: Duration = .seconds(3)
        /// How long to wait for any reply before the requests in flight count as lost.
        public var requestTimeout: Duration = .seconds(10)
        /// Times one block is requested before the fetch fails.
        public var maxAttempts = 5
        /// Chunk requests in flight for a standby copy (``Priority/standby(budgetBytes:)``).
        public var standbyWindow = 2
        /// Most bytes per second a standby copy is pulled at (0 = no limit): receiving, checking
        /// and writing chunks (decrypting them, with CURVE) takes CPU time from the stage the
        /// worker serves, and link time from other workers' pulls.
        public var standbyBytesPerSecond: Double = 64 * 1_048_576
        /// Caches of other models unused for this long are removed when a stage's pull starts
        /// (nil = never). The cache of the model pulled, which holds the stage's layers and its
        /// standby copies, is kept.
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
    /// Lines a peer can cause, within a budget (``LogLimiter``).
    private let limited: LogLimiter
    private let current = LockedValue<PullProgress?>(nil)
    private let standbyCurrent = LockedValue<PullProgress?>(nil)

    /// The pull of a stage's layers in progress (nil when none runs).
    public var progress: PullProgress? { current.withLock { $0 } }
    /// The pull of a standby copy in progress (nil when none runs).
    public var standbyProgress: PullProgress? { standbyCurrent.withLock { $0 } }

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
        self.limited = LogLimiter(logger: logger)
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

    /// How a pull shares the link with others.
    public enum Priority: Sendable, Equatable {
        /// A stage's own layers: every connection, the whole window; waits for the cache while
        /// another worker on this machine holds it.
        case stage
        /// Standby copies, in the background: one connection and ``Settings/standbyWindow``
        /// chunks in flight (the model source answers in arrival order, so a stage's pull, with
        /// many more in flight, gets most of its time); fails at once when the cache is busy (the
        /// caller tries again later) and when the pull's blocks exceed `budgetBytes`. Its
        /// progress is in ``standbyProgress``, not ``progress``.
        case standby(budgetBytes: UInt64)
    }

    /// Makes sure the cache holds every byte the stage of `assignment` reads, pulling what is
    /// missing from `source`; returns the cache file to load from. `heard` is called whenever the
    /// coordinator answers (it is alive).
    public func fetch(_ assignment: StageAssignment, source: String,
                      heard: @escaping @Sendable () -> Void = {}) async throws(LayerFetchError) -> Report {
        try await fetch(assignment.pull, source: source, priority: .stage, heard: heard)
    }

    /// Makes sure the cache holds every byte a stage running `pull`'s layers reads, pulling what
    /// is missing from `source` at `priority`. Cancelling the task stops the pull (what was
    /// written stays cached).
    public func fetch(_ pull: LayerPull, source: String, priority: Priority,
                      heard: @escaping @Sendable () -> Void = {}) async throws(LayerFetchError) -> Report {
        let connections = priority == .stage ? max(1, settings.connections) : 1
        var sockets: [AsyncSocket] = []
        func closeAll() async { for s in sockets { await s.close() } }
        do {
            for _ in 0..<connections {
                sockets.append(try AsyncSocket(loop: loop, type: .dealer) { s in
                    try s.apply(self.security.client(serverKey: self.coordinatorPublicKey))
                    try s.set(.linger, 0)
                    try s.set(.maxMessageSize, Int64(FrameLimits.modelChunks(self.codec.limits,
                                                                            maxChunkBytes: Int(clamping: self.settings.blockSize))))
                    try s.apply(LinkLiveness.cluster, as: .connecting)
                    try s.connect(source)
                })
            }
        } catch {
            await closeAll()
            throw LayerFetchError("cannot connect to the model source \(source): \(error)")
        }
        let published = priority == .stage ? current : standbyCurrent
        defer { published.withLock { $0 = nil } }
        do {
            let report = try await fetch(pull, priority: priority, sockets: sockets, source: source, progress: published, heard: heard)
            await closeAll()
            return report
        } catch {
            await closeAll()
            throw error
        }
    }

    private func fetch(_ a: LayerPull, priority: Priority, sockets: [AsyncSocket], source: String,
                       progress: LockedValue<PullProgress?>, heard: @escaping @Sendable () -> Void) async throws(LayerFetchError) -> Report {
        let standby = priority != .stage
        let started = ContinuousClock.now
        let info = try await modelInfo(a.modelSHA256, socket: sockets[0], heard: heard)
        guard info.model.sizeBytes == a.modelSize || a.modelSize == 0 else {
            throw LayerFetchError("the model source's \(a.modelSHA256) has \(info.model.sizeBytes) bytes, the assignment says \(a.modelSize)")
        }
        let size = info.model.sizeBytes
        let blockSize = try Self.blockSize(info, preferred: settings.blockSize)
        let cache = try await openCache(sha: a.modelSHA256, size: size, blockSize: blockSize, waiting: !standby, heard: heard)
        cache.prefersDirectWrites = !standby
        logger.info(standby ? "pulling a standby copy from the coordinator" : "pulling layers from the coordinator", metadata: [
            "source": "\(source)", "model": "\(a.modelName)", "layers": "\(a.layers)", "cache": "\(cache.path)",
            "cached_blocks": "\(cache.recordedBlocks)", "direct_writes": "\(cache.writesDirectly)",
        ])
        var totals = Totals(started: started)
        // 1. The GGUF header, metadata and tensor index.
        let header = StageByteRanges.blocks(covering: [0..<info.dataOffset], blockSize: blockSize, fileSize: size)
        try await ensure(header, cache: cache, size: size, blockSize: blockSize, sha: a.modelSHA256, layers: a.layers,
                         sockets: sockets, window: standby ? settings.standbyWindow : settings.window, progress: progress,
                         rate: standby ? settings.standbyBytesPerSecond : 0, totals: &totals, heard: heard)
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
        if case .standby(let budget) = priority {
            let bytes = rest.reduce(UInt64(0)) { $0 + UInt64(StageByteRanges.blockBytes($1, blockSize: blockSize, fileSize: size).count) }
            guard bytes <= budget else {
                var error = LayerFetchError("a standby copy of layers \(a.layers) takes \(bytes) bytes, over the budget of \(budget)")
                error.overBudget = true
                throw error
            }
        }
        try await ensure(rest, cache: cache, size: size, blockSize: blockSize, sha: a.modelSHA256, layers: a.layers,
                         sockets: sockets, window: standby ? settings.standbyWindow : settings.window, progress: progress,
                         rate: standby ? settings.standbyBytesPerSecond : 0, totals: &totals, heard: heard)
        try cache.commit()
        let elapsed = Self.seconds(ContinuousClock.now - started)
        let report = Report(path: cache.path, neededBytes: totals.downloaded + totals.reused,
                            downloadedBytes: totals.downloaded, reusedBytes: totals.reused, retries: totals.retries)
        logger.info(standby ? "standby copy pulled" : "layers pulled", metadata: [
            "layers": "\(a.layers)", "tensor_bytes": "\(StageByteRanges.byteCount(ranges))",
            "needed_bytes": "\(report.neededBytes)", "downloaded_bytes": "\(report.downloadedBytes)",
            "reused_bytes": "\(report.reusedBytes)", "retries": "\(report.retries)",
            "seconds": "\(String(format: "%.2f", elapsed))",
            "mib_per_s": "\(String(format: "%.1f", Double(report.downloadedBytes) / 1_048_576 / max(elapsed, 1e-3)))",
        ])
        return report
    }

    /// Most blocks a model file may be cut into: 2^20 (1 TiB at 1 MiB blocks), so that a model
    /// source's numbers cannot make the fetcher list, schedule or track more than that.
    public static let maxBlocks: UInt64 = 1 << 20

    /// The block size to pull `info`'s file with (`preferred`, capped by the source's largest
    /// chunk), after checking what the model source said: a non-empty file, the tensor data
    /// starting inside it, chunks of at least 64 KiB (or `preferred` when smaller), and at most
    /// ``maxBlocks`` blocks. (A zero chunk size trapped the worker; a tiny one or a huge file made
    /// it list, request and track blocks without bound.)
    static func blockSize(_ info: Caravan_V1_ModelInfo, preferred: UInt64) throws(LayerFetchError) -> UInt64 {
        let size = info.model.sizeBytes
        guard size > 0 else { throw LayerFetchError("the model source describes an empty model file") }
        guard info.dataOffset > 0, info.dataOffset <= size else {
            throw LayerFetchError("the model source puts the tensor data at \(info.dataOffset) of a \(size)-byte file")
        }
        // The source must send chunks of at least 64 KiB (or the block size asked for, when smaller).
        let smallest = min(max(1, preferred), 64 << 10)
        guard UInt64(info.maxChunkBytes) >= smallest else {
            throw LayerFetchError("the model source sends chunks of at most \(info.maxChunkBytes) bytes; at least \(smallest) are needed")
        }
        let blockSize = min(max(1, preferred), UInt64(info.maxChunkBytes))
        let blocks = size / blockSize + (size % blockSize == 0 ? 0 : 1)
        guard blocks <= maxBlocks else {
            throw LayerFetchError("the model source's \(size)-byte file in chunks of at most \(info.maxChunkBytes) bytes is "
                + "\(blocks) blocks; at most \(maxBlocks) are pulled")
        }
        return blockSize
    }

    /// Opens the cache, waiting while another worker on this machine holds it (it is pulling from
    /// the same coordinator, which is therefore alive: `heard` is called while waiting).
    private func openCache(sha: String, size: UInt64, blockSize: UInt64, waiting: Bool,
                           heard: @Sendable () -> Void) async throws(LayerFetchError) -> LayerCache {
        if waiting, let age = settings.pruneUnusedAfter {
            let removed = LayerCache.prune(directory: cacheDirectory, keeping: sha, unusedFor: age)
            if !removed.isEmpty {
                logger.info("removed unused layer caches", metadata: ["models": "\(removed.joined(separator: ", "))"])
            }
        }
        var logged = false
        while true {
            do {
                return try LayerCache(directory: cacheDirectory, sha256: sha, size: size, blockSize: blockSize)
            } catch where error.cacheBusy && waiting {
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
        // Why the last reply that did not decode was refused (a model info with a chunk size of 0,
        // data outside the file...), for the error when no good answer comes.
        var invalid: String?
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
                let decoded: Inbound
                do {
                    decoded = try codec.decode(frames)
                } catch {
                    invalid = "\(error)"
                    continue
                }
                switch decoded {
                case .message(.modelInfo(let m), let rid) where rid == id:
                    guard m.model.sha256 == sha else { throw LayerFetchError("the model source describes \(m.model.sha256), not \(sha)") }
                    return m
                case .message(.error(let e), let rid) where rid == id:
                    throw LayerFetchError("the coordinator cannot serve the model \(sha): \(e.code): \(e.message)")
                default:
                    continue  // a late or unrelated reply
                }
            }
            logger.warning("no model info from the coordinator yet", metadata: ["attempt": "\(attempt)"])
        }
        if let invalid { throw LayerFetchError("the model source answered with an invalid message: \(invalid)") }
        throw LayerFetchError("the model source did not answer \(settings.maxAttempts) model info requests")
    }

    /// Reuses the cached blocks of `blocks` and pulls the others, spread over `sockets` (block i
    /// on connection i mod n, each with its share of the window).
    private func ensure(_ blocks: [Int], cache: LayerCache, size: UInt64, blockSize: UInt64, sha: String, layers: LayerRange,
                        sockets: [AsyncSocket], window: Int, progress: LockedValue<PullProgress?>, rate: Double,
                        totals: inout Totals, heard: @escaping @Sendable () -> Void) async throws(LayerFetchError) {
        // Reading back a large cached stage takes a while; the coordinator just answered (ModelInfo).
        let (cached, missing) = cache.check(blocks, checked: heard)
        totals.reused += cached.reduce(0) { $0 + UInt64(StageByteRanges.blockBytes($1, blockSize: blockSize, fileSize: size).count) }
        guard !missing.isEmpty else { return }
        let missingBytes = missing.reduce(UInt64(0)) { $0 + UInt64(StageByteRanges.blockBytes($1, blockSize: blockSize, fileSize: size).count) }
        let shared = PullShared(cache: cache, totalBytes: missingBytes, layers: layers, progress: progress,
                                logInterval: settings.logInterval, logger: logger)
        let lanes = max(1, min(sockets.count, missing.count))
        let window = max(1, (window + lanes - 1) / lanes)
        let firstID = totals.nextRequestID
        let results: [LaneResult]
        do {
            results = try await withThrowingTaskGroup(of: LaneResult.self) { group in
                for lane in 0..<lanes {
                    let part = stride(from: lane, to: missing.count, by: lanes).map { missing[$0] }
                    let socket = sockets[lane]
                    group.addTask {
                        try await self.pull(part, socket: socket, shared: shared, size: size, blockSize: blockSize, sha: sha,
                                            window: window, rate: rate / Double(lanes), firstRequestID: firstID, heard: heard)
                    }
                }
                var out: [LaneResult] = []
                for try await r in group { out.append(r) }
                return out
            }
        } catch let error as LayerFetchError {
            throw error
        } catch {
            throw LayerFetchError("pulling layers failed: \(error)")
        }
        try shared.commit()
        totals.downloaded += results.reduce(0) { $0 + $1.downloaded }
        totals.retries += results.reduce(0) { $0 + $1.retries }
        totals.nextRequestID = results.map(\.nextRequestID).max() ?? firstID
    }

    /// What one connection's share of a pull did.
    private struct LaneResult: Sendable {
        var downloaded: UInt64
        var retries: Int
        var nextRequestID: UInt64
    }

    /// Pulls `blocks` over one connection, at most `window` requests in flight.
    private func pull(_ blocks: [Int], socket: AsyncSocket, shared: PullShared, size: UInt64, blockSize: UInt64, sha: String,
                      window: Int, rate: Double, firstRequestID: UInt64,
                      heard: @Sendable () -> Void) async throws(LayerFetchError) -> LaneResult {
        let started = ContinuousClock.now
        var schedule = ChunkSchedule(blocks: blocks, blockSize: blockSize, fileSize: size, window: window,
                                     maxAttempts: settings.maxAttempts, firstRequestID: firstRequestID)
        var request = Caravan_V1_ModelChunkRequest()
        request.sha256 = sha
        var downloaded: UInt64 = 0
        // Requests in flight count as lost `requestTimeout` after the last reply that answered one
        // of them: replies that answer none (late, unrelated, junk) do not keep them waiting.
        var lastAnswer = ContinuousClock.now
        while !schedule.isComplete {
            if let failure = schedule.failure { throw LayerFetchError("pulling layers failed: \(failure)") }
            if Task.isCancelled { throw LayerFetchError("the pull was cancelled") }
            let idle = schedule.inFlightCount == 0
            let requests = schedule.nextRequests()
            if idle, !requests.isEmpty { lastAnswer = ContinuousClock.now }
            for r in requests {
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
            do throws(ZMQError) {
                let left = lastAnswer + settings.requestTimeout - ContinuousClock.now
                guard left > .zero else { throw ZMQError(code: EAGAIN, operation: "receive", detail: "no answer in time") }
                frames = try await socket.receive(timeout: left)
            } catch {
                guard error.isTimeout else { throw LayerFetchError("the model source socket failed: \(error)") }
                lastAnswer = ContinuousClock.now
                limited.warning("no chunk from the coordinator in time: asking again",
                                metadata: ["in_flight": "\(schedule.inFlightCount)", "timeout": "\(settings.requestTimeout)"])
                schedule.timedOut()
                continue
            }
            heard()
            let answered = (schedule.completed, schedule.retries)
            defer { if (schedule.completed, schedule.retries) != answered { lastAnswer = ContinuousClock.now } }
            do {
                switch try codec.decode(frames) {
                case .modelChunk(let chunk, let rid):
                    guard chunk.sha256 == sha else {
                        schedule.failed(id: rid, reason: "a chunk of another model (\(chunk.sha256))")
                        continue
                    }
                    switch schedule.received(id: rid, offset: chunk.offset, count: chunk.count) {
                    case .accept(let block):
                        // The codec verified the chunk's CRC-32C against its bytes: the cache records it.
                        try chunk.payload.withUnsafeBytes { (bytes) throws(LayerFetchError) in
                            try shared.write(block: block, bytes: bytes, checksum: chunk.checksum)
                        }
                        downloaded += UInt64(chunk.count)
                        try shared.completed(UInt64(chunk.count))
                        if rate > 0 {
                            // Paced: the next requests leave when the bytes so far are due at `rate`.
                            let due = started + .milliseconds(Int64(Double(downloaded) / rate * 1000))
                            let now = ContinuousClock.now
                            if due > now { try? await Task.sleep(for: due - now) }
                        }
                    case .reject(let reason):
                        limited.warning("dropped a chunk", metadata: ["reason": "\(reason)"])
                    case .ignore:
                        break
                    }
                case .message(.error(let e), let rid):
                    limited.warning("the coordinator refused a chunk", metadata: ["code": "\(e.code)", "reason": "\(e.message)"])
                    schedule.failed(id: rid, reason: "\(e.code): \(e.message)")
                default:
                    limited.warning("model source: ignored an unexpected message")
                }
            } catch let error as LayerFetchError {
                throw error
            } catch {
                limited.warning("model source: dropped a bad chunk", metadata: ["reason": "\(error)"])
                if let rid = ModelChunkData.requestID(of: frames) { schedule.failed(id: rid, reason: "\(error)") }
            }
        }
        return LaneResult(downloaded: downloaded, retries: schedule.retries, nextRequestID: schedule.nextRequestID)
    }

    /// Log metadata of a progress report: MiB done of total, recent MiB/s, seconds left.
    static func metadata(_ p: PullProgress) -> Logger.Metadata {
        [
            "layers": "\(p.layers)",
            "done_mib": "\(String(format: "%.1f", Double(p.doneBytes) / 1_048_576))",
            "total_mib": "\(String(format: "%.1f", Double(p.totalBytes) / 1_048_576))",
            "mib_per_s": "\(String(format: "%.1f", p.bytesPerSecond / 1_048_576))",
            "eta_s": "\(p.etaSeconds.map { String(format: "%.1f", $0) } ?? "?")",
        ]
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

/// The state the connections of one pull share: the cache (written one block at a time), the
/// bytes done, the meter, and when the cache was last committed and progress last logged.
private final class PullShared: @unchecked Sendable {
    private let lock = NSLock()
    private let cache: LayerCache
    private let layers: LayerRange
    private let progress: LockedValue<PullProgress?>
    private let logInterval: Duration
    private let logger: Logger
    private let start = ContinuousClock.now
    private var meter: PullMeter
    private var done: UInt64 = 0
    private var lastSample: ContinuousClock.Instant
    private var lastCommit: ContinuousClock.Instant
    private var lastLog: ContinuousClock.Instant

    init(cache: LayerCache, totalBytes: UInt64, layers: LayerRange, progress: LockedValue<PullProgress?>,
         logInterval: Duration, logger: Logger) {
        self.cache = cache
        self.layers = layers
        self.progress = progress
        self.logInterval = logInterval
        self.logger = logger
        meter = PullMeter(totalBytes: totalBytes)
        meter.record(bytes: 0, at: 0)
        lastSample = start
        lastCommit = start
        lastLog = start
        progress.withLock { $0 = meter.progress(layers: layers) }
    }

    func write(block: Int, bytes: UnsafeRawBufferPointer, checksum: UInt32?) throws(LayerFetchError) {
        lock.lock()
        defer { lock.unlock() }
        try cache.write(block: block, bytes: bytes, checksum: checksum)
    }

    func commit() throws(LayerFetchError) {
        lock.lock()
        defer { lock.unlock() }
        try cache.commit()
    }

    /// `bytes` more were written: commits every 2 s, samples the rate every 250 ms, publishes the
    /// progress, logs it every `logInterval`.
    func completed(_ bytes: UInt64) throws(LayerFetchError) {
        lock.lock()
        defer { lock.unlock() }
        done += bytes
        let now = ContinuousClock.now
        if now - lastCommit >= .seconds(2) {
            try cache.commit()
            lastCommit = now
        }
        if now - lastSample >= .milliseconds(250) || done >= meter.totalBytes {
            lastSample = now
            let elapsed = now - start
            meter.record(bytes: done, at: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        let p = meter.progress(layers: layers, done: done)
        progress.withLock { $0 = p }
        if now - lastLog >= logInterval {
            lastLog = now
            logger.info("pulling layers", metadata: LayerFetcher.metadata(p))
        }
    }
}
