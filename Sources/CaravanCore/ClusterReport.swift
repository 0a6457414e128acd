/// The model a coordinator serves, as it reports it.
public struct ModelIdentity: Sendable, Equatable {
    /// Its file name (empty while the cluster has none).
    public var name: String
    /// SHA-256 of the file, lowercase hex.
    public var sha256: String
    /// File size, bytes.
    public var sizeBytes: UInt64
    /// Transformer blocks.
    public var layerCount: Int

    /// Creates an identity.
    public init(name: String = "", sha256: String = "", sizeBytes: UInt64 = 0, layerCount: Int = 0) {
        self.name = name
        self.sha256 = sha256
        self.sizeBytes = sizeBytes
        self.layerCount = layerCount
    }
}

/// One worker in a ``ClusterReport``.
public struct WorkerReport: Sendable, Equatable {
    /// Where a worker is in its life, as the coordinator reports it.
    public enum State: Sendable, Equatable, CaseIterable {
        /// Registered, no stage assigned.
        case idle
        /// Loading the layers of its stage.
        case loading
        /// Ready to run steps of its stage.
        case ready
        /// Finishing its work before it leaves (on request).
        case draining
        /// Lost (no heartbeats).
        case lost
        /// Its last assignment failed.
        case failed
        /// A state this build does not know (a newer coordinator).
        case unknown
    }

    /// How the coordinator judges a worker's liveness.
    public enum Health: Sendable, Equatable, CaseIterable {
        /// Heard from within the heartbeat interval.
        case healthy
        /// A heartbeat interval missed, not yet past the timeout.
        case suspect
        /// Silent past the timeout.
        case lost
        /// Being drained on request.
        case draining
        /// A health this build does not know.
        case unknown
    }

    /// Its id.
    public var workerID: String
    /// Its activation endpoint.
    public var dataAddress: String
    /// Where it is in its life.
    public var state: State
    /// How its liveness is judged.
    public var health: Health
    /// The layers of its stage (nil when it has none).
    public var layers: LayerRange?
    /// Its stage's place in the plan (0-based; meaningful with ``layers``).
    public var stageIndex: Int
    /// Memory it offered at registration, bytes.
    public var offeredMemoryBytes: UInt64
    /// Its measured speed, GFLOPS.
    public var measuredGflops: Double
    /// Memory its stage uses, bytes.
    public var memoryUsedBytes: UInt64
    /// Memory still free on it, bytes.
    public var memoryFreeBytes: UInt64
    /// How long ago its last message arrived (coordinator clock), milliseconds.
    public var lastHeartbeatAgeMs: UInt64
    /// When its last message arrived, Unix milliseconds.
    public var lastHeartbeatUnixMs: UInt64
    /// Measured round trip of heartbeats, milliseconds.
    public var heartbeatRttMs: Float
    /// Steps run since its stage was loaded.
    public var stepsRun: UInt64
    /// The recent time of one step, milliseconds (0: none yet).
    public var recentStepMs: Float
    /// The recent rows per step.
    public var recentRowsPerStep: Float
    /// Rows its stage processes per second at its recent step time.
    public var tokensPerSecond: Double
    /// The pull of layers it reported last (nil when none runs).
    public var pull: PullProgress?
    /// Standby copies placed on it: layer ranges of other stages it keeps in its layer cache so
    /// that it can take them over without a pull (empty = none).
    public var standbyRanges: [LayerRange] = []
    /// Bytes of ``standbyRanges``.
    public var standbyBytes: UInt64 = 0
    /// Bytes of ``standbyRanges`` its layer cache reports holding (a range counts once whole).
    public var standbyHeldBytes: UInt64 = 0
    /// Bytes of its layer cache it may fill with standby copies (0 = none).
    public var standbyBudgetBytes: UInt64 = 0

    /// Creates a worker report.
    public init(workerID: String, dataAddress: String = "", state: State = .idle, health: Health = .healthy,
                layers: LayerRange? = nil, stageIndex: Int = 0, offeredMemoryBytes: UInt64 = 0, measuredGflops: Double = 0,
                memoryUsedBytes: UInt64 = 0, memoryFreeBytes: UInt64 = 0, lastHeartbeatAgeMs: UInt64 = 0,
                lastHeartbeatUnixMs: UInt64 = 0, heartbeatRttMs: Float = 0, stepsRun: UInt64 = 0, recentStepMs: Float = 0,
                recentRowsPerStep: Float = 0, tokensPerSecond: Double = 0, pull: PullProgress? = nil) {
        self.workerID = workerID
        self.dataAddress = dataAddress
        self.state = state
        self.health = health
        self.layers = layers
        self.stageIndex = stageIndex
        self.offeredMemoryBytes = offeredMemoryBytes
        self.measuredGflops = measuredGflops
        self.memoryUsedBytes = memoryUsedBytes
        self.memoryFreeBytes = memoryFreeBytes
        self.lastHeartbeatAgeMs = lastHeartbeatAgeMs
        self.lastHeartbeatUnixMs = lastHeartbeatUnixMs
        self.heartbeatRttMs = heartbeatRttMs
        self.stepsRun = stepsRun
        self.recentStepMs = recentStepMs
        self.recentRowsPerStep = recentRowsPerStep
        self.tokensPerSecond = tokensPerSecond
        self.pull = pull
    }
}

/// One stage of a plan, made or previewed, as the coordinator reports it.
public struct StageReport: Sendable, Equatable {
    /// The worker that runs it.
    public var workerID: String
    /// Its layers.
    public var layers: LayerRange
    /// Estimated memory for its weights and KV cache, bytes.
    public var estimatedMemoryBytes: UInt64
    /// Estimated time of one decode step, milliseconds (0: unknown).
    public var estimatedStepMs: Double
    /// Memory the worker offers, bytes (0: not reported).
    public var workerMemoryBytes: UInt64

    /// Creates a stage.
    public init(workerID: String, layers: LayerRange, estimatedMemoryBytes: UInt64 = 0, estimatedStepMs: Double = 0,
                workerMemoryBytes: UInt64 = 0) {
        self.workerID = workerID
        self.layers = layers
        self.estimatedMemoryBytes = estimatedMemoryBytes
        self.estimatedStepMs = estimatedStepMs
        self.workerMemoryBytes = workerMemoryBytes
    }
}

/// One plan the coordinator made (or a change of its serving state).
public struct PlanChange: Sendable, Equatable {
    /// Its epoch (0 for an event that made no plan).
    public var epoch: UInt64
    /// When, Unix milliseconds.
    public var unixMs: UInt64
    /// Why.
    public var reason: String
    /// Its stages (empty when no plan was made).
    public var stages: [StageReport]
    /// Whether the coordinator served it.
    public var served: Bool

    /// Creates a change.
    public init(epoch: UInt64, unixMs: UInt64 = 0, reason: String = "", stages: [StageReport] = [], served: Bool = false) {
        self.epoch = epoch
        self.unixMs = unixMs
        self.reason = reason
        self.stages = stages
        self.served = served
    }
}

/// The cluster at a glance, as `caravanctl status` shows it.
public struct ClusterReport: Sendable, Equatable {
    /// The current plan epoch (0: no plan yet).
    public var planEpoch: UInt64
    /// The model served.
    public var model: ModelIdentity
    /// Whether CURVE is on.
    public var curveEnabled: Bool
    /// Registered workers.
    public var workers: [WorkerReport]
    /// Workers lost recently, most recent last.
    public var lostWorkers: [WorkerReport]
    /// Workers the coordinator waits for before planning.
    public var expectedWorkers: Int
    /// Unfinished (and, when asked, remembered ended) jobs the caller may see.
    public var jobs: [JobStatus]
    /// Jobs waiting for KV room.
    public var admissionQueued: Int
    /// Tokens generated per second, whole cluster.
    public var tokensPerSecond: Double
    /// Whether jobs are served now.
    public var serving: Bool
    /// Why not, when not.
    public var waitingReason: String
    /// Plans made so far, oldest first.
    public var planHistory: [PlanChange]
    /// The coordinator's wall clock when it answered, Unix milliseconds.
    public var nowUnixMs: UInt64
    /// Who may connect as a client ("lists", "open", "plain"; empty from older coordinators).
    public var clientAccess: String
    /// The asking key's roles, e.g. "admin,client" (empty in plain mode).
    public var callerRoles: String

    /// Creates a report.
    public init(planEpoch: UInt64 = 0, model: ModelIdentity = ModelIdentity(), curveEnabled: Bool = false,
                workers: [WorkerReport] = [], lostWorkers: [WorkerReport] = [], expectedWorkers: Int = 0, jobs: [JobStatus] = [],
                admissionQueued: Int = 0, tokensPerSecond: Double = 0, serving: Bool = false, waitingReason: String = "",
                planHistory: [PlanChange] = [], nowUnixMs: UInt64 = 0, clientAccess: String = "", callerRoles: String = "") {
        self.planEpoch = planEpoch
        self.model = model
        self.curveEnabled = curveEnabled
        self.workers = workers
        self.lostWorkers = lostWorkers
        self.expectedWorkers = expectedWorkers
        self.jobs = jobs
        self.admissionQueued = admissionQueued
        self.tokensPerSecond = tokensPerSecond
        self.serving = serving
        self.waitingReason = waitingReason
        self.planHistory = planHistory
        self.nowUnixMs = nowUnixMs
        self.clientAccess = clientAccess
        self.callerRoles = callerRoles
    }
}
