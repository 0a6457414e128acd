import CaravanCore
import CaravanTransport
import CaravanWire
import Fingerprint
import Foundation
import Logging
import ServiceLifecycle
import ZeroMQ

/// A worker daemon: registers with the coordinator over its control socket (DEALER → the
/// coordinator's ROUTER), heartbeats, loads the stage it is assigned, and runs steps arriving on
/// its data socket (ROUTER, bound), sending each output to the next hop.
///
/// It is one `Service`: graceful shutdown (SIGTERM) lets the step being computed finish, then closes
/// the sockets and returns.
public final class WorkerService: Service {
    private let drainedSignal = AsyncStream.makeStream(of: Void.self)
    private var drained: AsyncStream<Void>.Continuation { drainedSignal.continuation }
    /// Pulls layers from the coordinator for models without a local file (set when running).
    private let layerFetcher = LockedValue<LayerFetcher?>(nil)
    /// The coordinator's model source (from its RegisterAck; empty = none).
    private let modelSource = LockedValue("")
    /// The load (or pull and load) of a stage running beside the control loop (cancelled by the next load or shutdown).
    private let loadTask = LockedValue<Task<Void, Never>?>(nil)
    /// What the layer cache holds (reported in registrations and heartbeats; read again after
    /// every pull).
    private let cachedLayers = LockedValue<[CachedLayers]>([])
    /// Keeps the standby copies the coordinator places here (set when running).
    private let standby = LockedValue<StandbyKeeper?>(nil)
    /// Which CURVE clients the data socket admits (nil in plain mode; set when running).
    private let dataGate = LockedValue<DataSocketGate?>(nil)
    /// The configuration.
    public let configuration: WorkerConfiguration
    private let logger: Logger
    /// Lines a peer can cause, within a budget (``LogLimiter``).
    private let limited: LogLimiter
    private let session = SessionBox()
    /// Times the stage's steps (see ``StageRuntime``).
    private let stepClock: any Clock<Duration>

    /// A worker with `configuration`, logging to `logger`, timing its steps on `stepClock`.
    public init(configuration: WorkerConfiguration, logger: Logger, stepClock: any Clock<Duration> = ContinuousClock()) {
        self.configuration = configuration
        self.logger = logger
        self.limited = LogLimiter(logger: logger)
        self.stepClock = stepClock
    }

    /// Runs the daemon: binds the data socket (ROUTER), connects the control socket (DEALER) to the
    /// coordinator, with CURVE and ZAP as configured, and serves over them (``run(over:)``).
    public func run() async throws {
        let config = configuration
        // One I/O thread per pull connection: a pull decrypts its connections on as many cores.
        let context = try Context(ioThreads: max(1, config.pullConnections))
        let loop = try EventLoop(context: context, name: "worker-zmq")
        defer {
            loop.shutdown()
            dataGate.withLock { $0 }?.stop()
            context.terminate()
        }
        if case .curve = config.security {
            // Must run before the data socket binds: without a ZAP handler libzmq admits any client.
            let gate = try DataSocketGate(context: context, coordinatorPublicKey: config.coordinatorPublicKey, logger: logger)
            dataGate.withLock { $0 = gate }
        }
        let codec = WireCodec(limits: config.limits)
        let control = try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.apply(config.security.client(serverKey: config.coordinatorPublicKey))
            // A connection that stops answering (a cut link, heavy packet loss with TCP backing
            // off) is dropped and re-established instead of stalling for minutes.
            try socket.apply(LinkLiveness.cluster, as: .connecting)
            // One identity for the life of this process: when the connection is re-made the
            // coordinator sees the same peer (no re-registration, no lost assignment); a restarted
            // worker is a new peer.
            try socket.set(.routingID, Self.processIdentity(config.workerID))
            try socket.set(.maxMessageSize, Int64(FrameLimits.fromCoordinator(config.limits)))
            try socket.connect(config.coordinatorEndpoint)
        }
        let data = try AsyncSocket(loop: loop, type: .router) { socket in
            try socket.apply(config.security.server)
            try socket.set(.receiveHighWaterMark, 64)
            // A frame above the protocol's payload limit is dropped while it is read (`FrameLimits`).
            try socket.set(.maxMessageSize, Int64(FrameLimits.data(config.limits)))
            try socket.apply(LinkLiveness.cluster, as: .bound)
            try socket.bind(config.dataEndpoint)
        }
        let bound = try await data.withSocket { socket throws(ZMQError) in try socket.lastEndpoint }
        var fetchSettings = LayerFetcher.Settings()
        fetchSettings.pruneUnusedAfter = config.cacheKeepDays.map { $0 * 86_400 }
        fetchSettings.connections = max(1, config.pullConnections)
        let fetcher = LayerFetcher(loop: loop, codec: codec, security: config.security, coordinatorPublicKey: config.coordinatorPublicKey,
                                   cacheDirectory: config.cacheDirectory, settings: fetchSettings, logger: logger)
        let security = config.security
        try await run(over: WorkerLinks(
            control: ZeroMQTransport(control, routed: false), data: ZeroMQTransport(data, routed: true),
            dialer: ZeroMQDialer(loop: loop, security: { security.client(serverKey: $0) }),
            dataAddress: config.advertisedDataEndpoint ?? Endpoints.advertisable(bound), layerFetcher: fetcher))
    }

    /// Serves over `links` until cancelled, shut down gracefully or drained: registers, heartbeats,
    /// loads assignments and runs the steps arriving on the data link. Closes the links when done.
    public func run(over links: WorkerLinks) async throws {
        let config = configuration
        var fingerprints: [(ModelFingerprint, String)] = []
        for path in config.modelPaths {
            let started = ContinuousClock.now
            let fp = try ModelFingerprint.of(path: path)
            logger.info("model file", metadata: ["path": "\(path)", "sha256": "\(fp.sha256)", "took": "\(ContinuousClock.now - started)"])
            fingerprints.append((fp, path))
        }
        let memory = HostInfo.memory()
        let free = min(config.memoryLimit ?? UInt64.max, memory?.available ?? config.memoryLimit ?? 0)
        let cached = LayerCache.contents(directory: config.cacheDirectory)
        cachedLayers.withLock { $0 = cached }
        let standbyBudget = config.effectiveStandbyBudget
        let capabilities = WorkerCapabilities(
            cores: config.threads, totalMemory: memory?.total ?? free, freeMemory: free,
            speed: config.speed ?? measureSpeed(threads: config.threads), models: fingerprints.map(\.0),
            cachedLayers: cached, standbyBudget: standbyBudget)
        let codec = WireCodec(limits: config.limits)
        let advertised = links.dataAddress
        logger.info("worker started", metadata: [
            "id": "\(config.workerID)", "data": "\(advertised)", "coordinator": "\(config.coordinatorEndpoint)",
            "threads": "\(config.threads)", "memory": "\(free)", "speed": "\(capabilities.speed)",
            "security": "\(config.security == .plain ? "plain" : "curve")", "data_key": "\(config.security.publicKey)",
            "standby_budget": "\(standbyBudget)",
        ])
        WorkerMetrics.declare()
        let runtime = StageRuntime(dialer: links.dialer, codec: codec, threads: config.threads,
                                   coordinatorPublicKey: config.coordinatorPublicKey, sendTimeout: config.sendTimeout,
                                   logger: logger, clock: stepClock, releaseGrace: config.kvReleaseGrace,
                                   mirrorFlushInterval: config.mirrorFlushInterval)
        let ports = Ports(control: links.control, codec: codec, logger: logger)
        let register = {
            var r = capabilities.register(workerID: config.workerID, dataAddress: advertised)
            r.dataPublicKey = config.security.publicKey
            return r
        }()
        let paths = Dictionary(fingerprints.map { ($0.0.sha256, $0.1) }, uniquingKeysWith: { a, _ in a })
        layerFetcher.withLock { $0 = links.layerFetcher }
        let cacheDirectory = config.cacheDirectory
        standby.withLock {
            $0 = StandbyKeeper(budget: standbyBudget, logger: logger, startDelay: config.standbyStartDelay,
                               diskSpace: { HostInfo.diskSpace(path: cacheDirectory) },
                               trim: { [self] a, budget in
                let own = self.session.read { $0.runningAssignment }.flatMap { $0.modelSHA256 == a.modelSHA256 ? $0.layers : nil }
                return LayerCache.trim(directory: cacheDirectory, sha256: a.modelSHA256, own: own, standby: a.ranges,
                                       layerCount: a.modelLayerCount, budget: budget)
            }, pull: { [self] (pull, budget) throws(LayerFetchError) in
                try await self.pullStandby(pull, budget: budget, ports: ports)
            }, pulled: { [self] in
                let cached = LayerCache.contents(directory: cacheDirectory)
                self.cachedLayers.withLock { $0 = cached }
            })
        }

        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for directive in self.session.apply({ $0.start() }) {
                        await self.execute(directive, ports: ports, runtime: runtime, register: register, paths: paths, group: nil)
                    }
                    do {
                        for try await message in links.control.deliveries() {
                            await self.handleControl(message.frames, ports: ports, runtime: runtime, register: register, paths: paths)
                        }
                    } catch {
                        self.logger.error("control socket failed", metadata: ["reason": "\(error)"])
                    }
                }
                group.addTask {
                    do {
                        for try await message in links.data.deliveries() {
                            await runtime.handle(frames: message.frames, from: message.identity)
                        }
                    } catch {
                        self.logger.error("data socket failed", metadata: ["reason": "\(error)"])
                    }
                }
                group.addTask {
                    await self.heartbeats(ports: ports, runtime: runtime, register: register, paths: paths)
                }
                // An operator drained this worker and its layers moved elsewhere: exit cleanly.
                for await _ in self.drainedSignal.stream {
                    self.logger.info("drained: shutting down")
                    break
                }
                group.cancelAll()
            }
        }
        logger.info("worker stopping")
        await standby.withLock { $0 }?.pause()
        standby.withLock { $0 = nil }  // its pull closure holds this service
        await cancelLoad()
        await runtime.shutdown()
        await links.data.close()
        await links.control.close()
    }

    /// The control socket's routing identity: the worker id (cut to fit) and a random nonce of
    /// this process, printable and never starting with a zero byte.
    static func processIdentity(_ workerID: String) -> String {
        let nonce = (0..<4).map { _ in String(UInt32.random(in: 0...UInt32.max), radix: 16) }.joined()
        return "w:" + String(workerID.prefix(200)) + ":" + nonce
    }

    // MARK: Control plane

    private func handleControl(_ frames: [Message], ports: Ports, runtime: StageRuntime,
                               register: Caravan_V1_Register, paths: [String: String]) async {
        let body: Caravan_V1_Envelope.OneOf_Body
        do {
            guard case .message(let b, _) = try ports.codec.decode(frames) else {
                limited.warning("control socket: dropped an unexpected data message")
                return
            }
            body = b
        } catch {
            limited.warning("control socket: dropped a bad frame", metadata: ["reason": "\(error)"])
            return
        }
        ports.lastHeard.withLock { $0 = .now }
        if case .registerAck(let m) = body, m.accepted { modelSource.withLock { $0 = m.modelSourceAddress } }
        var directives: [WorkerSession.Directive] = []
        switch body {
        case .hello(let m):
            logger.debug("coordinator hello", metadata: ["node": "\(m.nodeID)"])
        case .registerAck(let m):
            if m.heartbeatTimeoutMs > 0 { ports.coordinatorTimeout.withLock { $0 = .milliseconds(Int(m.heartbeatTimeoutMs)) } }
            directives = session.apply { $0.registerAck(accepted: m.accepted, reason: m.reason,
                                                        heartbeatIntervalMilliseconds: Int(m.heartbeatIntervalMs),
                                                        planEpoch: m.planEpoch) }
        case .stageAssignment(let m):
            do {
                let assignment = try StageAssignment(wire: m)
                directives = session.apply { $0.assigned(assignment) }
            } catch {
                limited.warning("dropped an invalid assignment", metadata: ["reason": "\(error)"])
            }
        case .releaseSequences(let m):
            await runtime.release(m.sequenceIds, epoch: m.planEpoch)
        case .standbyAssignment(let m):
            do {
                let assignment = try StandbyAssignment(wire: m)
                // KV rows mirrored to and from this worker, whether or not it holds the file.
                await runtime.mirror(assignment)
                if paths[assignment.modelSHA256] != nil {
                    logger.debug("standby copies not needed: this worker has the model file")
                } else {
                    standby.withLock { $0 }?.assign(assignment)
                }
            } catch {
                logger.warning("dropped an invalid standby assignment", metadata: ["reason": "\(error)"])
            }
        case .heartbeat:
            break
        case .drain(let m):
            logger.info("drain requested", metadata: ["reason": "\(m.reason)", "exit": "\(m.exit)"])
            if m.exit { drained.yield() }
        default:
            limited.warning("control socket: ignored an unexpected message kind")
        }
        for directive in directives {
            await execute(directive, ports: ports, runtime: runtime, register: register, paths: paths, group: nil)
        }
    }

    private func execute(_ directive: WorkerSession.Directive, ports: Ports, runtime: StageRuntime,
                         register: Caravan_V1_Register, paths: [String: String], group: Void?) async {
        switch directive {
        case .sendHelloAndRegister:
            var hello = Caravan_V1_Hello()
            hello.protocolVersion = WireProtocol.version
            hello.role = .worker
            hello.nodeID = configuration.workerID
            hello.softwareVersion = "caravan-worker 0.1"
            ports.registerSent.withLock { $0 = .now }
            await ports.send(.hello(hello))
            var r = register
            r.runningPlanEpoch = session.read { $0.forgottenAssignment?.planEpoch ?? 0 }
            await ports.send(.register(r))
        case .startHeartbeats(let ms):
            ports.heartbeatInterval.withLock { $0 = .milliseconds(ms) }
        case .load(let assignment):
            let started = ContinuousClock.now
            // Admit the previous stage before loading: it may connect as soon as its own load ends.
            dataGate.withLock { $0 }?.admit(assignment)
            // A newer assignment replaces a load or pull still running; the new load starts when
            // the old one has stopped (a pull's cache, the runtime), without holding up this loop.
            let previous = loadTask.withLock { task in
                defer { task = nil }
                return task
            }
            previous?.cancel()
            let local = paths[assignment.modelSHA256]
            // Loading runs beside the control loop, which keeps handling heartbeats, releases and
            // newer assignments meanwhile: a pull takes minutes, and even a local load of a wide
            // model takes tens of seconds, long enough for a waiting loop to hear nothing from the
            // coordinator and register again mid-load.
            let keeper = standby.withLock { $0 }
            let task = Task {
                await previous?.value
                // The stage's own load first: a standby pull stops (and lets go of the cache).
                await keeper?.pause()
                guard !Task.isCancelled else { return }
                var error: String?
                var bytes = 0
                do {
                    let path = if let local { local } else { try await self.pullLayers(assignment, ports: ports) }
                    bytes = try await runtime.load(assignment, path: path)
                } catch let e {
                    error = "\(e)"
                }
                guard !Task.isCancelled else { return }  // replaced by a newer assignment, or stopping
                await self.loaded(assignment, bytes: bytes, error: error, started: started, ports: ports, runtime: runtime)
                if error == nil { keeper?.serving(epoch: assignment.planEpoch) }
            }
            loadTask.withLock { $0 = task }
        case .reportReady(let epoch, let error):
            // The coordinator asked again for a stage already loaded (loads report themselves).
            var ready = Caravan_V1_AssignmentReady()
            ready.planEpoch = epoch
            ready.workerID = configuration.workerID
            ready.ready = error == nil
            ready.error = error ?? ""
            if error == nil { ready.held = await Self.held(runtime, epoch: epoch) }
            await ports.send(.assignmentReady(ready))
        case .stop(let reason):
            logger.critical("\(reason)")
        }
    }

    /// Cancels the load or pull running beside the control loop, if any, and waits for it to end.
    private func cancelLoad() async {
        let running = loadTask.withLock { task in
            defer { task = nil }
            return task
        }
        running?.cancel()
        await running?.value
    }

    /// Reports a finished load (of the epoch being loaded) with `AssignmentReady`.
    private func loaded(_ assignment: StageAssignment, bytes: Int, error: String?, started: ContinuousClock.Instant,
                        ports: Ports, runtime: StageRuntime) async {
        let next = session.apply { $0.loaded(epoch: assignment.planEpoch, error: error) }
        WorkerMetrics.loaded(ok: error == nil)
        WorkerMetrics.loadTime.record(duration: ContinuousClock.now - started)
        for d in next {
            if case .reportReady(let epoch, let error) = d {
                var ready = Caravan_V1_AssignmentReady()
                ready.planEpoch = epoch
                ready.workerID = configuration.workerID
                ready.ready = error == nil
                ready.error = error ?? ""
                ready.loadMs = UInt32(clamping: (ContinuousClock.now - started).wholeMilliseconds)
                ready.memoryBytes = UInt64(bytes)
                if error == nil { ready.held = await Self.held(runtime, epoch: epoch) }
                await ports.send(.assignmentReady(ready))
            }
        }
    }

    /// What the stage of `epoch` holds in every layer of the sequences that continued into it
    /// (`AssignmentReady.held`; empty for another epoch).
    private static func held(_ runtime: StageRuntime, epoch: UInt64) async -> [Caravan_V1_HeldSequence] {
        let held = await runtime.held
        guard held.epoch == epoch else { return [] }
        return held.positions.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { id, positions in
            var h = Caravan_V1_HeldSequence()
            h.sequenceID = id.rawValue
            h.positions = UInt32(clamping: positions)
            return h
        }
    }

    /// Pulls the bytes of `assignment`'s layers from the coordinator into the layer cache (reusing
    /// what is cached); returns the cache file. Every answer from the coordinator counts as hearing
    /// from it, so a long download does not look like a silent coordinator.
    private func pullLayers(_ assignment: StageAssignment, ports: Ports) async throws(LayerFetchError) -> String {
        let advertised = modelSource.withLock { $0 }
        guard let fetcher = layerFetcher.withLock({ $0 }), !advertised.isEmpty else {
            throw LayerFetchError("no local file with sha256 \(assignment.modelSHA256) (\(assignment.modelName)) and the coordinator offers no model source")
        }
        let source = LayerFetcher.resolve(source: advertised, coordinatorEndpoint: configuration.coordinatorEndpoint)
        let report = try await fetcher.fetch(assignment, source: source, heard: { ports.lastHeard.withLock { $0 = .now } })
        WorkerMetrics.layerBytesPulled.increment(by: report.downloadedBytes)
        WorkerMetrics.layerBytesReused.increment(by: report.reusedBytes)
        let cached = LayerCache.contents(directory: configuration.cacheDirectory)
        cachedLayers.withLock { $0 = cached }
        return report.path
    }

    /// Pulls a standby copy (``StandbyKeeper``) from the coordinator's model source at standby
    /// priority.
    private func pullStandby(_ pull: LayerPull, budget: UInt64, ports: Ports) async throws(LayerFetchError) -> LayerFetcher.Report {
        let advertised = modelSource.withLock { $0 }
        guard let fetcher = layerFetcher.withLock({ $0 }), !advertised.isEmpty else {
            throw LayerFetchError("the coordinator offers no model source")
        }
        let source = LayerFetcher.resolve(source: advertised, coordinatorEndpoint: configuration.coordinatorEndpoint)
        let report = try await fetcher.fetch(pull, source: source, priority: .standby(budgetBytes: budget),
                                             heard: { ports.lastHeard.withLock { $0 = .now } })
        WorkerMetrics.layerBytesPulled.increment(by: report.downloadedBytes)
        WorkerMetrics.layerBytesReused.increment(by: report.reusedBytes)
        return report
    }

    private func heartbeats(ports: Ports, runtime: StageRuntime, register: Caravan_V1_Register,
                            paths: [String: String]) async {
        var sequence: UInt64 = 0
        var markedUsed = ContinuousClock.now - .seconds(3600)
        while !Task.isCancelled {
            // A stage served from the layer cache (and the standby copies there) is in use: mark it
            // hourly, so that a worker of another model sharing the directory never prunes it.
            if ContinuousClock.now - markedUsed >= .seconds(3600), let running = session.read({ $0.runningAssignment }),
               paths[running.modelSHA256] == nil {
                markedUsed = .now
                LayerCache.markUsed(directory: configuration.cacheDirectory, sha256: running.modelSHA256)
            }
            let interval = ports.heartbeatInterval.withLock { $0 }
            try? await Task.sleep(for: interval ?? .milliseconds(200))
            if Task.isCancelled { break }
            // Silence for longer than the coordinator's timeout: it may have restarted; register again.
            let silence = ContinuousClock.now - ports.lastHeard.withLock { $0 }
            let unanswered = ContinuousClock.now - ports.registerSent.withLock { $0 }
            if session.read({ $0.state == .registering }), unanswered > .seconds(1) {
                // The registration (or its answer) was lost with a broken connection, while the
                // coordinator's other messages keep arriving: ask again.
                await execute(.sendHelloAndRegister, ports: ports, runtime: runtime, register: register, paths: paths, group: nil)
            } else if silence > ports.coordinatorTimeout.withLock({ $0 }) {
                let directives = session.apply { $0.coordinatorSilent() }
                if !directives.isEmpty {
                    logger.warning("no word from the coordinator for \(silence): registering again")
                    ports.lastHeard.withLock { $0 = .now }
                }
                for d in directives { await execute(d, ports: ports, runtime: runtime, register: register, paths: paths, group: nil) }
            }
            guard interval != nil else { continue }
            sequence += 1
            var beat = Caravan_V1_Heartbeat()
            beat.senderID = configuration.workerID
            beat.sequence = sequence
            beat.sentUnixMs = UInt64(Date().timeIntervalSince1970 * 1000)
            let state = session.read { $0.state }
            beat.planEpoch = session.read { $0.planEpoch }
            if case .ready = state { WorkerMetrics.ready.record(1) } else { WorkerMetrics.ready.record(0) }
            WorkerMetrics.coordinatorSilence.record(Double(silence.components.seconds) + Double(silence.components.attoseconds) / 1e18)
            switch state {
            case .initial, .registering, .idle, .refused: beat.state = .idle
            case .loading: beat.state = .loading
            case .ready: beat.state = .ready
            case .failed: beat.state = .failed
            }
            beat.freeMemoryBytes = HostInfo.memory()?.available ?? 0
            let stats = runtime.statistics.withLock { $0 }
            beat.stepsRun = UInt64(stats.steps)
            beat.recentStepMs = Float(stats.recentMilliseconds)
            beat.recentRowsPerStep = Float(stats.recentRows)
            if let pull = layerFetcher.withLock({ $0 })?.progress { beat.pull = pull.wire }
            beat.cachedLayers = cachedLayers.withLock { $0 }.map(\.wire)
            await ports.send(.heartbeat(beat))
        }
    }
}

/// The control socket with its codec.
final class Ports: Sendable {
    let control: any Transport
    let codec: WireCodec
    let logger: Logger
    let heartbeatInterval = LockedValue<Duration?>(nil)
    /// When the coordinator was last heard from.
    let lastHeard = LockedValue<ContinuousClock.Instant>(.now)
    /// When Hello + Register were last sent.
    let registerSent = LockedValue<ContinuousClock.Instant>(.now)
    /// Silence after which the worker registers again (the coordinator's heartbeat timeout).
    let coordinatorTimeout = LockedValue<Duration>(.seconds(10))

    init(control: any Transport, codec: WireCodec, logger: Logger) {
        self.control = control
        self.codec = codec
        self.logger = logger
    }

    func send(_ body: Caravan_V1_Envelope.OneOf_Body) async {
        do {
            try await control.send(try codec.encode(body), timeout: .seconds(5))
        } catch {
            logger.warning("could not send a control message", metadata: ["reason": "\(error)"])
        }
    }
}

/// The session state machine behind a lock.
final class SessionBox: Sendable {
    private let value = LockedValue(WorkerSession())
    func apply(_ body: (inout WorkerSession) -> [WorkerSession.Directive]) -> [WorkerSession.Directive] {
        value.withLock { body(&$0) }
    }
    func read<T>(_ body: (WorkerSession) -> T) -> T { value.withLock { body($0) } }
}
