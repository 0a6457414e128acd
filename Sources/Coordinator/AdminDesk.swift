import CaravanCore
import CaravanWire
import Planning

/// Answers operators' requests on the client socket (`ClusterStatusRequest` → `ClusterStatus`,
/// `PlanPreviewRequest` → `PlanPreview`) from a ``ClusterStatusSource``. Changes nothing.
final class AdminDesk: Sendable {
    private let source: any ClusterStatusSource
    /// How clients are admitted ("lists", "open", "plain"), reported in every status.
    private let clientAccess: String

    init(source: any ClusterStatusSource, clientAccess: String = "plain") {
        self.source = source
        self.clientAccess = clientAccess
    }

    /// The reply to an admin request from `caller`, or nil when `body` is not one this desk
    /// answers. A status lists only the caller's own jobs unless it is an admin; a plan preview
    /// is for admins only.
    func answer(_ body: Caravan_V1_Envelope.OneOf_Body, caller: Caller = .plain) -> Caravan_V1_Envelope.OneOf_Body? {
        switch body {
        case .clusterStatusRequest(let r):
            var snapshot = source.snapshot()
            let waitingForRoom = snapshot.jobs.filter { $0.status.queuePosition > 0 }.count
            snapshot.jobs = snapshot.jobs.filter { caller.mayTouch(jobOwnedBy: $0.owner) }
            var status = AdminReports.clusterStatus(snapshot, includeFinishedJobs: r.includeFinishedJobs)
            status.admissionQueued = UInt32(clamping: waitingForRoom)
            status.clientAccess = clientAccess
            status.callerRoles = caller.key.isEmpty && caller.roles == .all ? "" : caller.roles.description
            return .clusterStatus(status)
        case .planPreviewRequest where !caller.roles.contains(.admin):
            return Self.forbidden("a plan preview is for admin keys only (authorized_admins)")
        case .planPreviewRequest(let r):
            return .planPreview(AdminReports.planPreview(r, basis: source.planningBasis, snapshot: source.snapshot()))
        default:
            return nil
        }
    }

    /// The reply to a request the caller's roles do not allow.
    static func forbidden(_ message: String) -> Caravan_V1_Envelope.OneOf_Body {
        var e = Caravan_V1_ErrorReply()
        e.code = "forbidden"
        e.message = message
        return .error(e)
    }

    /// The reply when no desk is installed yet.
    static let notReady: Caravan_V1_Envelope.OneOf_Body = {
        var e = Caravan_V1_ErrorReply()
        e.code = "unavailable"
        e.message = "the coordinator is starting"
        return .error(e)
    }()
}

/// Builds the admin replies from a snapshot (pure functions).
public enum AdminReports {
    /// Jobs a `ClusterStatus` lists at most, so that the reply stays far below the client
    /// socket's frame limit whatever the job table holds (`caravanctl status JOB` shows any job).
    public static let maxListedJobs = 512

    /// The `ClusterStatus` for `snapshot`; ended jobs only when `includeFinishedJobs`. At most
    /// `maxJobs` jobs: the unfinished ones first, then the newest ended ones, in submission order.
    public static func clusterStatus(_ s: ClusterSnapshot, includeFinishedJobs: Bool,
                                     maxJobs: Int = maxListedJobs) -> Caravan_V1_ClusterStatus {
        var out = Caravan_V1_ClusterStatus()
        let (epoch, stages, peers) = current(s.phase)
        out.planEpoch = epoch
        out.model = s.model
        out.curveEnabled = s.curve
        out.expectedWorkers = UInt32(clamping: s.expectedWorkers)
        out.nowUnixMs = s.nowUnixMs
        out.workers = s.members.map { member in
            var w = workerStatus(member, snapshot: s)
            if let i = peers.firstIndex(of: member.peer) {
                w.layerStart = UInt32(stages[i].layers.start)
                w.layerEnd = UInt32(stages[i].layers.end)
                w.stageIndex = UInt32(i)
                if member.draining {
                    w.state = .draining
                } else {
                    w.state = member.readyEpoch == epoch ? .ready : .loading
                }
            } else {
                w.state = member.draining ? .draining : .idle
            }
            return w
        }
        out.lostWorkers = s.lostMembers.map { member in
            var w = workerStatus(member, snapshot: s)
            w.state = .lost
            w.health = .lost
            return w
        }
        out.jobs = listed(s.jobs.map(\.status).filter { includeFinishedJobs || !$0.state.isEnded }, most: maxJobs)
            .map { Caravan_V1_JobStatus($0) }
        out.tokensPerSecond = s.jobs.reduce(0) { $0 + $1.tokensPerSecond }
        out.serving = s.unavailableReason == nil
        if let reason = s.unavailableReason {
            if case .gathering = s.phase, s.members.count < s.expectedWorkers {
                out.waitingReason = "\(reason) (\(s.members.count) of \(s.expectedWorkers) workers registered)"
            } else {
                out.waitingReason = reason
            }
        }
        out.planHistory = s.planHistory.map { record in
            var c = Caravan_V1_PlanChange()
            c.planEpoch = record.epoch
            c.unixMs = unixMs(record.atMs, snapshot: s)
            c.reason = record.reason
            c.served = record.served
            c.stages = record.stages.map { stage in
                var p = Caravan_V1_PlannedStage()
                p.workerID = stage.workerID
                p.layerStart = UInt32(stage.layers.start)
                p.layerEnd = UInt32(stage.layers.end)
                p.estimatedMemoryBytes = stage.memoryBytes
                return p
            }
            return c
        }
        return out
    }

    /// What the planner would do for the request (the current model or `request.shape`) over the
    /// registered workers, with the coordinator's context and batch unless the request sets them.
    public static func planPreview(_ request: Caravan_V1_PlanPreviewRequest, basis: PlanningBasis,
                                   snapshot s: ClusterSnapshot) -> Caravan_V1_PlanPreview {
        var out = Caravan_V1_PlanPreview()
        let facts: ModelFacts
        if request.hasShape {
            do {
                facts = try ModelFacts(shape: ModelShape(wire: request.shape))
            } catch {
                out.reason = error.description
                return out
            }
            out.modelName = request.shape.name
        } else if request.hasModel, !request.model.sha256.isEmpty, request.model.sha256 != s.model.sha256 {
            out.reason = "the coordinator knows only the model it serves (\(s.model.name)); send the model's shape instead"
            return out
        } else {
            facts = basis.facts
            out.modelName = basis.modelName
        }
        let context = request.maxContextTokens > 0 ? Int(request.maxContextTokens) : basis.contextTokens
        let batch = request.maxBatchSequences > 0 ? Int(request.maxBatchSequences) : basis.batchSequences
        out.maxContextTokens = UInt32(clamping: context)
        out.maxBatchSequences = UInt32(clamping: batch)
        let excluded = Set(request.excludeWorkerIds)
        let members = s.members.filter { !excluded.contains($0.workerID) && !$0.draining }
        let plan: PipelinePlan
        do {
            plan = try Planner.plan(model: facts, workers: members.map {
                PlanWorker(id: $0.workerID, memoryBytes: $0.memoryBytes, speed: $0.speed)
            }, contextTokens: context, batchSequences: batch)
        } catch {
            out.reason = error.description
            return out
        }
        out.feasible = true
        let (_, stages, peers) = current(s.phase)
        var total = 0.0
        var known = true
        out.stages = plan.stages.map { stage in
            var p = Caravan_V1_PlannedStage()
            p.workerID = stage.workerID
            p.layerStart = UInt32(stage.layers.start)
            p.layerEnd = UInt32(stage.layers.end)
            p.estimatedMemoryBytes = stage.memoryBytes
            let member = members.first { $0.workerID == stage.workerID }
            p.workerMemoryBytes = member?.memoryBytes ?? 0
            // A worker that ran steps of its current stage: scale its step time by layer count.
            if let member, member.stepsRun > 0, member.recentStepMs > 0, let i = peers.firstIndex(of: member.peer),
               stages[i].layers.count > 0 {
                p.estimatedStepMs = Double(member.recentStepMs) / Double(stages[i].layers.count) * Double(stage.layers.count)
                total += p.estimatedStepMs
            } else {
                known = false
            }
            return p
        }
        if known, total > 0 { out.estimatedTokensPerSecond = 1000 / total }
        return out
    }

    /// A worker's health: draining on request, lost past the timeout, suspect after one missed
    /// interval (twice the interval without a message), healthy otherwise.
    public static func health(_ member: Member, snapshot s: ClusterSnapshot) -> Caravan_V1_WorkerHealth {
        if member.draining { return .draining }
        let age = s.nowMs > member.lastSeen ? s.nowMs - member.lastSeen : 0
        if age > s.heartbeatTimeoutMs { return .lost }
        if age > 2 * s.heartbeatIntervalMs { return .suspect }
        return .healthy
    }

    private static func workerStatus(_ member: Member, snapshot s: ClusterSnapshot) -> Caravan_V1_WorkerStatus {
        var w = Caravan_V1_WorkerStatus()
        w.workerID = member.workerID
        w.dataAddress = member.dataAddress
        w.capabilities.freeMemoryBytes = member.memoryBytes
        w.capabilities.measuredGflops = member.speed
        w.health = health(member, snapshot: s)
        w.lastHeartbeatAgeMs = s.nowMs > member.lastSeen ? s.nowMs - member.lastSeen : 0
        w.lastHeartbeatUnixMs = unixMs(member.lastSeen, snapshot: s)
        w.stepsRun = member.stepsRun
        w.recentStepMs = member.recentStepMs
        w.recentRowsPerStep = member.recentRowsPerStep
        w.memoryUsedBytes = member.stageMemoryBytes
        w.memoryFreeBytes = member.freeMemoryBytes > 0 ? member.freeMemoryBytes : member.memoryBytes
        if member.recentStepMs > 0, member.recentRowsPerStep > 0 {
            w.tokensPerSecond = Double(member.recentRowsPerStep) / Double(member.recentStepMs) * 1000
        }
        if let pull = member.pull { w.pull = pull.wire }
        if let standby = member.standby {
            w.standbyRanges = standby.ranges.map(\.span)
            w.standbyBytes = standby.bytes
            w.standbyHeldBytes = standby.heldBytes(member.holdings, layerCount: Int(s.model.layerCount))
        }
        w.standbyBudgetBytes = member.standbyBudgetBytes
        return w
    }

    private static func current(_ phase: Membership.Phase) -> (UInt64, [StageAssignment], [PeerID]) {
        switch phase {
        case let .assigning(epoch, stages, peers), let .serving(epoch, stages, peers): return (epoch, stages, peers)
        case .gathering, .waiting: return (0, [], [])
        }
    }

    private static func unixMs(_ ms: UInt64, snapshot s: ClusterSnapshot) -> UInt64 {
        let back = s.nowMs > ms ? s.nowMs - ms : 0
        return s.nowUnixMs > back ? s.nowUnixMs - back : 0
    }

    /// `jobs` (in submission order) cut to `most`: unfinished jobs first (the newest of them),
    /// then the newest ended ones; submission order kept.
    private static func listed(_ jobs: [JobStatus], most: Int) -> [JobStatus] {
        guard jobs.count > most else { return jobs }
        let unfinished = jobs.indices.filter { !jobs[$0].state.isEnded }.suffix(max(0, most))
        let finished = jobs.indices.filter { jobs[$0].state.isEnded }.suffix(max(0, most - unfinished.count))
        return (Array(unfinished) + Array(finished)).sorted().map { jobs[$0] }
    }
}
