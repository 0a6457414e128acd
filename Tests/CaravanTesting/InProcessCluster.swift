import CaravanTransport
import CaravanWire
import CaravanCore
import Coordinator
import Foundation
import Worker

/// A coordinator and its workers in one process, over an ``InMemoryHub``: the daemons' own logic
/// (``CoordinatorService/run(over:)``, ``WorkerService/run(over:)``) with no socket and no child
/// process, on a model file such as ``TinyModel``'s, with faults injected through the hub.
///
/// Time: the daemons keep their own clocks; the cluster runs them with short intervals (heartbeats
/// every 50 ms, a worker lost after 400 ms of silence, a step deadline of 1 s) so that failures are
/// noticed within a fraction of a second. A worker may be given a dilated clock for its step timing
/// (``WorkerOptions/stepTimeScale``), which makes it look slow without slowing the test.
public final class InProcessCluster: Sendable {
    /// How one worker runs.
    public struct WorkerOptions: Sendable {
        /// Relative speed it reports at registration (the planner splits layers by it).
        public var speed = 1.0
        /// Its step times as measured and reported to the coordinator are multiplied by this (1:
        /// real): a worker with 8 looks eight times slower than it is.
        public var stepTimeScale = 1
        /// The standby budget it reports (nil: the daemon's default; 0: it keeps no standby
        /// copies and no KV rows are mirrored to it).
        public var standbyBudget: UInt64?
        /// Options with the defaults.
        public init(speed: Double = 1.0, stepTimeScale: Int = 1, standbyBudget: UInt64? = nil) {
            self.speed = speed
            self.stepTimeScale = stepTimeScale
            self.standbyBudget = standbyBudget
        }
    }

    /// The hub every link of the cluster goes through (for faults).
    public let hub: InMemoryHub
    /// The log lines of every daemon.
    public let logs = LogRecorder()
    /// The coordinator's configuration.
    public let coordinatorConfiguration: CoordinatorConfiguration
    /// The model file.
    public let modelPath: String
    private let tasks = LockedValue<[String: Task<Void, Never>]>([:])
    private let coordinator = LockedValue<CoordinatorService?>(nil)
    private let nextWorker = LockedValue(0)

    /// The coordinator's node name on the hub.
    public static let coordinatorNode = "coordinator"
    /// The client endpoint.
    public static let clientsEndpoint = "mem://coordinator/clients"
    static let controlEndpoint = "mem://coordinator/control"
    static let resultsEndpoint = "mem://coordinator/results"

    /// A cluster on `modelPath` expecting `workers` workers (started with ``start(workers:)``);
    /// `configure` may change the coordinator's configuration (lanes, rebalancing, limits).
    public init(modelPath: String, workers: Int, capacity: Int = 1000,
                configure: (inout CoordinatorConfiguration) -> Void = { _ in }) {
        hub = InMemoryHub(capacity: capacity)
        self.modelPath = modelPath
        var c = CoordinatorConfiguration(
            modelPath: modelPath, controlEndpoint: Self.controlEndpoint, clientsEndpoint: Self.clientsEndpoint,
            resultsEndpoint: Self.resultsEndpoint, expectedWorkers: workers, activationDType: .f32, contextTokens: 256,
            batchSequences: 8, maxBatchRows: 128, heartbeatInterval: .milliseconds(50), heartbeatTimeout: .milliseconds(400),
            stepDeadline: .seconds(1))
        c.joinSettle = .milliseconds(300)
        c.queueTimeout = .seconds(20)
        c.drainTimeout = .zero
        // A re-plan for balance only where a test asks for it.
        c.rebalance.enabled = false
        configure(&c)
        coordinatorConfiguration = c
    }

    deinit { stop() }

    /// The node name of worker `index` (counted from 1 in start order).
    public static func workerNode(_ index: Int) -> String { "worker-\(index)" }

    /// Starts the coordinator, then one worker per element of `workers`; returns at once (see
    /// ``waitUntilServing(after:timeout:)``).
    public func start(workers: [WorkerOptions]) throws {
        let service = CoordinatorService(configuration: coordinatorConfiguration, logger: logs.logger(Self.coordinatorNode))
        coordinator.withLock { $0 = service }
        let node = Self.coordinatorNode
        let links = CoordinatorLinks(
            control: try hub.bind(Self.controlEndpoint, node: node), results: try hub.bind(Self.resultsEndpoint, node: node),
            clients: try hub.bind(Self.clientsEndpoint, node: node), dialer: hub.dialer(node: node),
            controlAddress: Self.controlEndpoint, clientsAddress: Self.clientsEndpoint, resultAddress: Self.resultsEndpoint)
        launch(node) { try await service.run(over: links) }
        for options in workers { try addWorker(options) }
    }

    /// Starts `count` workers with the default options.
    public func start(workers count: Int) throws {
        try start(workers: Array(repeating: WorkerOptions(), count: count))
    }

    /// Starts one more worker; returns its node name.
    @discardableResult
    public func addWorker(_ options: WorkerOptions = WorkerOptions()) throws -> String {
        let index = nextWorker.withLock { n in
            n += 1
            return n
        }
        let node = Self.workerNode(index)
        let dataEndpoint = "mem://\(node)/data"
        var config = WorkerConfiguration(
            workerID: node, coordinatorEndpoint: Self.controlEndpoint, dataEndpoint: dataEndpoint,
            advertisedDataEndpoint: dataEndpoint, modelPaths: [modelPath], threads: 1, memoryLimit: 1 << 30,
            speed: options.speed, sendTimeout: .seconds(2))
        config.standbyBudget = options.standbyBudget
        config.mirrorFlushInterval = .zero  // every step's rows at once: replays are counted exactly
        config.cacheDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("caravan-in-process-\(ProcessInfo.processInfo.processIdentifier)-no-cache").path
        let service = WorkerService(configuration: config, logger: logs.logger(node),
                                    stepClock: DilatedClock(factor: options.stepTimeScale))
        let links = WorkerLinks(
            control: hub.connect(Self.controlEndpoint, node: node, routingID: Array("w:\(node)".utf8)),
            data: try hub.bind(dataEndpoint, node: node), dialer: hub.dialer(node: node), dataAddress: dataEndpoint)
        launch(node) { try await service.run(over: links) }
        return node
    }

    /// Work the coordinator's pipelines redid in replays after re-plans so far.
    public var replayTotals: ReplayTotals { coordinator.withLock { $0 }?.replayTotals ?? ReplayTotals() }

    /// Kills a node as a crash would: its endpoints vanish, its links close, its tasks are
    /// cancelled, and what is sent to it is lost.
    public func kill(_ node: String) {
        hub.kill(node)
        tasks.withLock { $0.removeValue(forKey: node) }?.cancel()
    }

    /// Freezes a node (like `SIGSTOP`): it neither reads nor sends until ``resume(_:)``.
    public func pause(_ node: String) { hub.pause(node) }

    /// Lets a frozen node go on.
    public func resume(_ node: String) { hub.resume(node) }

    /// A client connected to the coordinator's client endpoint.
    public func client(_ name: String = "client", identity: String? = nil) -> InProcessClient {
        InProcessClient(hub: hub, endpoint: Self.clientsEndpoint, node: name, identity: identity)
    }

    /// Waits until the coordinator serves a plan of an epoch above `epoch`; returns its status.
    @discardableResult
    public func waitUntilServing(after epoch: UInt64 = 0, timeout: Duration = .seconds(10)) async throws -> Caravan_V1_ClusterStatus {
        let client = client("status-\(UInt32.random(in: 0...UInt32.max))")
        let deadline = ContinuousClock.now + timeout
        var last: Caravan_V1_ClusterStatus?
        while ContinuousClock.now < deadline {
            if let status = try? await client.status(timeout: .milliseconds(500)) {
                if status.serving, status.planEpoch > epoch {
                    await client.close()
                    return status
                }
                last = status
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        await client.close()
        throw InProcessClient.Timeout(description: "the cluster did not serve a plan after epoch \(epoch): \(String(describing: last))\n\(logs.text.suffix(4000))")
    }

    /// Stops every node (cancels their tasks and closes their links).
    public func stop() {
        let running = tasks.withLock { t in
            defer { t = [:] }
            return t
        }
        for (node, task) in running {
            hub.kill(node)
            task.cancel()
        }
    }

    /// Runs a node's service as a task of its own; a service that stops with an error logs it
    /// as a daemon would before exiting.
    private func launch(_ node: String, _ body: @escaping @Sendable () async throws -> Void) {
        let logs = self.logs
        let task = Task {
            do {
                try await body()
            } catch {
                logs.record("critical [\(node)] stopped: \(error)")
            }
        }
        tasks.withLock { $0[node] = task }
    }
}
