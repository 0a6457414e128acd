import CaravanWire
import CaravanTransport

/// How the coordinator daemon runs.
public struct CoordinatorConfiguration: Sendable {
    /// The model file (the coordinator tokenizes with it and plans from its tensor index).
    public var modelPath: String
    /// Control endpoint workers connect to (ROUTER, bound).
    public var controlEndpoint: String
    /// Client endpoint for jobs (ROUTER, bound).
    public var clientsEndpoint: String
    /// Where the last stage sends results (ROUTER, bound); nil = a free port on the control host.
    public var resultsEndpoint: String?
    /// Workers to wait for before planning.
    public var expectedWorkers: Int
    /// Activation dtype between stages.
    public var activationDType: TensorDType
    /// Context (positions per sequence) every stage's cache holds.
    public var contextTokens: Int
    /// Sequences per step the plan sizes KV caches for.
    public var batchSequences: Int
    /// Most rows per step.
    public var maxBatchRows: Int
    /// Lanes (steps in flight at once, each with its own sequences); nil = one per stage, at
    /// least two.
    public var lanes: Int?
    /// Heartbeat interval asked of workers.
    public var heartbeatInterval: Duration
    /// Silence after which a worker is lost.
    public var heartbeatTimeout: Duration
    /// How long a worker whose control connection was closed by its own end (its process exited
    /// or was killed: the kernel closes the connection at once) may take to connect again before
    /// it is lost, without waiting for the heartbeat timeout. nil: one heartbeat interval plus
    /// 150 ms, since a worker that only re-makes its connection is back within ZeroMQ's reconnect
    /// interval (100 ms) and is recognised by its next heartbeat. A frozen process, a dead machine
    /// or a cut link close nothing and stay on the heartbeat timeout.
    public var connectionGrace: Duration?
    /// Whether a closed connection loses a worker at all (false: only the heartbeat timeout does).
    public var losesClosedConnections = true

    /// The connection grace in force (nil when closed connections lose no worker).
    public var effectiveConnectionGrace: Duration? {
        losesClosedConnections ? (connectionGrace ?? heartbeatInterval + .milliseconds(150)) : nil
    }
    /// Deadline for one pipeline step.
    public var stepDeadline: Duration
    /// Wire limits for received frames.
    public var limits: WireLimits
    /// How long a graceful shutdown waits for running jobs.
    public var drainTimeout: Duration = .seconds(10)
    /// How long a job may wait for a pipeline (start-up, re-plan, too few workers) before it fails.
    public var queueTimeout: Duration = .seconds(300)
    /// Whether the cluster gauges (jobs, worker health, step times) are refreshed for the metrics
    /// endpoint (once a second); counters and histograms are recorded either way.
    public var recordsMetrics = false
    /// Unfinished jobs (running or waiting) the coordinator holds at most; a job submitted beyond
    /// is refused (`UNAVAILABLE`) until some end.
    public var maxUnfinishedJobs = 4096
    /// Where the job journal lives (nil = in memory only: a restart forgets the jobs).
    public var stateDirectory: String?
    /// When a slow worker makes the coordinator re-plan.
    public var rebalance = RebalancePolicy()
    /// How long a worker joining a serving cluster (a new one, or one back from a freeze or a cut
    /// link) must be heard steadily before a re-plan gives it layers.
    public var joinSettle: Duration = .seconds(5)
    /// CURVE (with the coordinator's key pair) or plain connections.
    public var security: ClusterSecurity
    /// Where the model source binds (ROUTER; workers without the model file pull its bytes
    /// there); nil = a free port on the control host.
    public var modelSourceEndpoint: String?
    /// The model source address workers are told in `RegisterAck` (set by the service once the
    /// socket is bound; a wildcard host means the host of the control endpoint).
    public var modelSourceAddress = ""
    /// With CURVE: who may connect, and as what (``AccessList``); the service refuses to start
    /// with CURVE and no list. Ignored in plain mode, where every peer has every role.
    public var access: AccessList?
    /// Running and queued jobs one client key may hold at once (admins and plain mode: no limit
    /// beyond ``maxUnfinishedJobs``).
    public var maxJobsPerClient = 64

    /// Creates a configuration.
    public init(modelPath: String, controlEndpoint: String, clientsEndpoint: String, resultsEndpoint: String? = nil,
                expectedWorkers: Int, activationDType: TensorDType = .f16, contextTokens: Int = 2048,
                batchSequences: Int = 8, maxBatchRows: Int = 512, heartbeatInterval: Duration = .milliseconds(250),
                heartbeatTimeout: Duration = .milliseconds(2000), stepDeadline: Duration = .seconds(60),
                limits: WireLimits = WireLimits(), security: ClusterSecurity = .plain) {
        self.modelPath = modelPath
        self.controlEndpoint = controlEndpoint
        self.clientsEndpoint = clientsEndpoint
        self.resultsEndpoint = resultsEndpoint
        self.expectedWorkers = max(1, expectedWorkers)
        self.activationDType = activationDType
        self.contextTokens = max(1, contextTokens)
        self.batchSequences = max(1, batchSequences)
        self.maxBatchRows = max(1, maxBatchRows)
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.stepDeadline = stepDeadline
        self.limits = limits
        self.security = security
    }
}

/// When a worker that became slow makes the coordinator move layers (Petals-like hysteresis).
public struct RebalancePolicy: Sendable {
    /// Whether slow workers trigger re-plans at all.
    public var enabled = true
    /// Re-plan only when the plan with measured speeds predicts a bottleneck step time below this
    /// fraction of today's (0.75: a gain of at least a third).
    public var slowFactor = 0.75
    /// Never re-plan for balance sooner than this after the previous plan.
    public var minimumInterval: Duration = .seconds(30)
    /// Steps each stage must have run (since its load) before its speed is trusted.
    public var minimumSteps = 16
    /// Steps of the slowest stage a bottleneck must last before it counts as a slow worker
    /// (``SlowWatch``): a few slow samples under CPU contention are a transient.
    public var sustainedSteps: UInt64 = 32
    /// A re-plan for speed must save, over this horizon at the current load, more time than its
    /// pulls take.
    public var horizon: Duration = .seconds(600)
    /// Link speed assumed for pulls until one is measured (from the first assignments that
    /// pulled), bytes per second (1 Gbit/s).
    public var linkBytesPerSecond = 125_000_000.0

    /// The default policy.
    public init() {}
}
