import CaravanCore
import CaravanWire
import Fingerprint
import Foundation
import Planning

/// A job as the admin desk reports it.
public struct AdminJob: Sendable, Equatable {
    /// Its status (id, state, token counts, epoch, error, queue position).
    public var status: JobStatus
    /// Its current decode rate, tokens per second (0 when not generating).
    public var tokensPerSecond: Double
    /// The key of the client that submitted it ("" in plain mode).
    public var owner: String

    /// Creates a job entry.
    public init(status: JobStatus, tokensPerSecond: Double = 0, owner: String = "") {
        self.status = status
        self.tokensPerSecond = tokensPerSecond
        self.owner = owner
    }
}

/// Everything `caravanctl status` shows, read at one moment.
public struct ClusterSnapshot: Sendable {
    /// Now on the membership's clock (milliseconds since the coordinator started).
    public var nowMs: UInt64
    /// Now, wall clock, Unix milliseconds.
    public var nowUnixMs: UInt64
    /// Registered workers in join order.
    public var members: [Member]
    /// Workers lost recently, most recent last.
    public var lostMembers: [Member]
    /// The membership's phase (the current plan's stages live here).
    public var phase: Membership.Phase
    /// Workers the coordinator waits for before planning.
    public var expectedWorkers: Int
    /// Plans made so far, oldest first.
    public var planHistory: [PlanRecord]
    /// Known jobs (running, queued and remembered ended ones).
    public var jobs: [AdminJob]
    /// Why jobs are refused now; nil while serving.
    public var unavailableReason: String?
    /// Heartbeat interval and timeout, milliseconds (health is judged against them).
    public var heartbeatIntervalMs: UInt64
    public var heartbeatTimeoutMs: UInt64
    /// The model served.
    public var model: Caravan_V1_ModelIdentity
    /// Whether CURVE is on.
    public var curve: Bool

    /// Creates a snapshot (tests build synthetic ones).
    public init(nowMs: UInt64, nowUnixMs: UInt64, members: [Member], lostMembers: [Member] = [], phase: Membership.Phase,
                expectedWorkers: Int, planHistory: [PlanRecord] = [], jobs: [AdminJob] = [], unavailableReason: String?,
                heartbeatIntervalMs: UInt64, heartbeatTimeoutMs: UInt64, model: Caravan_V1_ModelIdentity = .init(),
                curve: Bool = false) {
        self.nowMs = nowMs
        self.nowUnixMs = nowUnixMs
        self.members = members
        self.lostMembers = lostMembers
        self.phase = phase
        self.expectedWorkers = expectedWorkers
        self.planHistory = planHistory
        self.jobs = jobs
        self.unavailableReason = unavailableReason
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.heartbeatTimeoutMs = heartbeatTimeoutMs
        self.model = model
        self.curve = curve
    }
}

/// What a plan preview of the current model is computed from.
public struct PlanningBasis: Sendable {
    /// The served model's sizes.
    public var facts: ModelFacts
    /// Its name.
    public var modelName: String
    /// Context and batch the coordinator sizes KV caches for.
    public var contextTokens: Int
    public var batchSequences: Int

    /// Creates a basis.
    public init(facts: ModelFacts, modelName: String, contextTokens: Int, batchSequences: Int) {
        self.facts = facts
        self.modelName = modelName
        self.contextTokens = contextTokens
        self.batchSequences = batchSequences
    }
}

/// Where the admin desk reads the cluster's state from.
public protocol ClusterStatusSource: Sendable {
    /// The cluster now.
    func snapshot() -> ClusterSnapshot
    /// The current model and planning limits.
    var planningBasis: PlanningBasis { get }
}

/// The running coordinator's state: its ``Membership`` and its ``JobDesk``.
struct LiveClusterStatus: ClusterStatusSource {
    let membership: LockedValue<Membership>
    let desk: JobDesk
    /// The control plane's clock (the one `Membership` is fed with), milliseconds.
    let clock: @Sendable () -> UInt64
    let configuration: CoordinatorConfiguration
    let model: Caravan_V1_ModelIdentity
    let planningBasis: PlanningBasis

    func snapshot() -> ClusterSnapshot {
        let m = membership.withLock { $0 }
        let now = max(clock(), m.clock)
        let (records, unavailable, queued) = desk.adminSnapshot()
        let instant = ContinuousClock.now
        let jobs = records.map { r -> AdminJob in
            var s = r.status
            s.queuePosition = queued[r.jobID] ?? 0
            let completion = r.tokenIDs.count
            var rate = 0.0
            if s.state == .generating, let first = r.firstToken, completion > 1 {
                let seconds = Double(JobDesk.milliseconds(instant - first)) / 1000
                if seconds > 0 { rate = Double(completion - 1) / seconds }
            }
            return AdminJob(status: s, tokensPerSecond: rate, owner: r.owner)
        }.sorted { ($0.status.submittedUnixMs, $0.status.job) < ($1.status.submittedUnixMs, $1.status.job) }
        var security = false
        if case .curve = configuration.security { security = true }
        return ClusterSnapshot(
            nowMs: now, nowUnixMs: UInt64(Date().timeIntervalSince1970 * 1000), members: m.members,
            lostMembers: m.lostMembers, phase: m.phase, expectedWorkers: m.expectedWorkers, planHistory: m.planHistory,
            jobs: jobs, unavailableReason: unavailable,
            heartbeatIntervalMs: UInt64(max(1, JobDesk.milliseconds(configuration.heartbeatInterval))),
            heartbeatTimeoutMs: m.heartbeatTimeout, model: model, curve: security)
    }
}

extension LiveClusterStatus {
    /// The wire identity of a model file.
    static func identity(_ fingerprint: ModelFingerprint, layerCount: Int) -> Caravan_V1_ModelIdentity {
        Caravan_V1_ModelIdentity(name: fingerprint.name, sha256: fingerprint.sha256, size: fingerprint.size, layerCount: layerCount)
    }
}
