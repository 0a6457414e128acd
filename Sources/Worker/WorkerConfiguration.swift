import CaravanWire
import CaravanTransport

/// How a worker daemon runs.
public struct WorkerConfiguration: Sendable {
    /// Stable id of the worker in the cluster (shown in logs and status).
    public var workerID: String
    /// The coordinator's control endpoint, e.g. `tcp://10.0.0.1:7000`.
    public var coordinatorEndpoint: String
    /// Where the data (activation) socket binds, e.g. `tcp://0.0.0.0:7001` or `tcp://127.0.0.1:0`.
    public var dataEndpoint: String
    /// The data endpoint other nodes connect to; nil = the bound endpoint (a wildcard host is
    /// replaced by 127.0.0.1).
    public var advertisedDataEndpoint: String?
    /// Model files this worker holds.
    public var modelPaths: [String]
    /// Compute threads for the stage's kernels.
    public var threads: Int
    /// Memory offered to the cluster, bytes; nil = what `/proc/meminfo` reports available.
    public var memoryLimit: UInt64?
    /// Relative speed reported to the planner; nil = measured at start-up.
    public var speed: Double?
    /// Wire limits for received frames.
    public var limits: WireLimits
    /// CURVE or plain connections.
    public var security: ClusterSecurity
    /// The coordinator's CURVE public key (needed with CURVE).
    public var coordinatorPublicKey: String
    /// How long a send to the next hop may wait for it before the step is dropped.
    public var sendTimeout: Duration
    /// Where layers pulled from the coordinator are cached (for models without a local file);
    /// default `~/.cache/caravan/layers`.
    public var cacheDirectory: String = LayerFetcher.defaultCacheDirectory
    /// Caches of other models unused for this many days are removed when a pull starts (nil =
    /// kept forever).
    public var cacheKeepDays: Double? = 14
    /// Connections a pull of layers uses (each with its own libzmq I/O thread for CURVE).
    public var pullConnections = 2
    /// Bytes of the layer cache this worker may fill with standby copies of other workers'
    /// layers (0 = none); nil = half the disk space free in ``cacheDirectory`` at start-up.
    /// Workers with the model file need none (they hold every layer).
    public var standbyBudget: UInt64?
    /// How long the worker waits, once its stage serves, before it pulls its standby copies: a
    /// new plan's first steps (after a loss, the replay of the running jobs) go first.
    public var standbyStartDelay: Duration = .seconds(5)
    /// How long a step that finds no KV room waits for the coordinator's release of a finished
    /// job's sequences (it comes on the control link and may arrive after the step reusing them).
    public var kvReleaseGrace: Duration = .milliseconds(500)
    /// How often a stage sends the KV rows its steps appended to the holders of mirrored layers:
    /// per step costs a small model's stages much of their throughput, and a loss recomputes at
    /// most the rows of one interval.
    public var mirrorFlushInterval: Duration = .milliseconds(100)

    /// The standby budget this worker reports: ``standbyBudget``, or half the free disk space of
    /// the cache directory.
    public var effectiveStandbyBudget: UInt64 {
        standbyBudget ?? (HostInfo.diskFree(path: cacheDirectory) ?? 0) / 2
    }

    /// Creates a configuration.
    public init(workerID: String, coordinatorEndpoint: String, dataEndpoint: String,
                advertisedDataEndpoint: String? = nil, modelPaths: [String], threads: Int,
                memoryLimit: UInt64? = nil, speed: Double? = nil, limits: WireLimits = WireLimits(),
                security: ClusterSecurity = .plain, coordinatorPublicKey: String = "", sendTimeout: Duration = .seconds(10)) {
        self.workerID = workerID
        self.coordinatorEndpoint = coordinatorEndpoint
        self.dataEndpoint = dataEndpoint
        self.advertisedDataEndpoint = advertisedDataEndpoint
        self.modelPaths = modelPaths
        self.threads = max(1, threads)
        self.memoryLimit = memoryLimit
        self.speed = speed
        self.limits = limits
        self.security = security
        self.coordinatorPublicKey = coordinatorPublicKey
        self.sendTimeout = sendTimeout
    }
}
