import CaravanCore
import CaravanWire
import Planning

/// A peer's ZeroMQ routing id on a ROUTER socket.
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    /// The routing id bytes.
    public let bytes: [UInt8]
    /// Wraps routing id bytes.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var description: String { bytes.map { String($0, radix: 16) }.joined() }
}

/// A registered worker.
public struct Member: Sendable, Equatable {
    /// Worker id from its Register.
    public var workerID: String
    /// Its control-socket peer.
    public var peer: PeerID
    /// Its data endpoint.
    public var dataAddress: String
    /// CURVE public key of its data socket (empty in plain mode).
    public var dataPublicKey: String = ""
    /// Memory offered, bytes.
    public var memoryBytes: UInt64
    /// Relative speed.
    public var speed: Double
    /// Last time it was heard from (milliseconds on the coordinator's clock).
    public var lastSeen: UInt64
    /// The epoch it reported ready for (0 = none).
    public var readyEpoch: UInt64 = 0
    /// An operator asked to drain it: it gets no layers in new plans and exits once a plan
    /// without it serves.
    public var draining = false
    /// Its last assignment failed to load (left out of plans until it registers again).
    public var loadFailed = false
    /// From its heartbeats: steps run since its stage was loaded.
    public var stepsRun: UInt64 = 0
    /// From its heartbeats: recent compute time of one step, milliseconds (0 = no steps yet).
    public var recentStepMs: Float = 0
    /// From its heartbeats: recent rows per step.
    public var recentRowsPerStep: Float = 0
    /// From its heartbeats: memory available on it now, bytes (0 = not reported yet).
    public var freeMemoryBytes: UInt64 = 0
    /// Memory its stage uses (weights, KV cache, buffers; from `AssignmentReady`), bytes.
    public var stageMemoryBytes: UInt64 = 0
    /// Since when it has been heard without a gap longer than the suspect time (milliseconds).
    public var heardSince: UInt64
    /// When it was last heard after a silence longer than the suspect time (nil = never): a
    /// joining worker's settling starts again.
    public var lastGapAt: UInt64?
    /// Its last heartbeat (arrival, send time, sequence), to tell who made the next gap.
    public var lastBeat: HeartbeatMark?
    /// Its last heartbeat gap longer than the suspect time (nil = none).
    public var lastHeartbeatGap: HeartbeatGap?
    /// When its link last delayed or lost heartbeats for longer than the suspect time (nil =
    /// never): a worker with such a recent gap (a lossy or flapping link) is left out of re-plans
    /// until it is steady. A gap the worker made itself (it sent late) does not count.
    public var lastLinkGapAt: UInt64?
    /// It joined while a plan was serving and no plan has counted it yet: it gets layers once it
    /// has been heard steadily for the join-settle time.
    public var awaitingPlan = false
    /// When its assignment of the plan being loaded was last sent (milliseconds).
    public var assignedAt: UInt64 = 0
    /// What it holds of the model without a pull: the file (from its Register), the layers of
    /// every stage it has loaded (they stay in its layer cache) and what it reported its layer
    /// cache holds (from earlier runs too).
    public var holdings = LayerHoldings()
    /// The pull of layers it reported in its last heartbeat (nil = none running).
    public var pull: PullProgress?
    /// Bytes of its layer cache it may fill with standby copies (from its Register; 0 = none).
    public var standbyBudgetBytes: UInt64 = 0
    /// The standby copies placed on it for the serving plan (nil = none).
    public var standby: StandbyCopies?
    /// When its control connection was closed by its own end (its process ended) and it has not
    /// connected again since (nil = connected), milliseconds.
    public var connectionClosedAt: UInt64?

    /// A member as registered.
    public init(workerID: String, peer: PeerID, dataAddress: String, dataPublicKey: String = "", memoryBytes: UInt64,
                speed: Double, lastSeen: UInt64) {
        self.workerID = workerID
        self.peer = peer
        self.dataAddress = dataAddress
        self.dataPublicKey = dataPublicKey
        self.memoryBytes = memoryBytes
        self.speed = speed
        self.lastSeen = lastSeen
        self.heardSince = lastSeen
    }
}

/// Why a plan is being made: it decides how the planner weighs moving layers.
public enum PlanPurpose: String, Sendable, Equatable {
    /// The first plan: layers in proportion to speed.
    case initial
    /// A worker was lost, drained, restarted, failed to load, or a step failed: the fewest bytes
    /// moved (survivors keep what they hold), then the fastest pipeline.
    case recovery
    /// A worker joined: the joined worker takes part, and movement is weighed against the gain
    /// over the rebalancing horizon (a worker that comes back gets the layers it still holds;
    /// the others keep theirs where moving them would not pay back).
    case growth
    /// A worker became slow: movement weighed against the gain over the rebalancing horizon.
    case rebalance

    /// How the planner weighs moving layers for this purpose, with the measured link speed and
    /// the rebalancing horizon: nil for the first plan (nothing serves yet: layers in proportion
    /// to speed), the fewest bytes for a recovery, bytes against the gain over `horizonSeconds`
    /// for a join or a rebalance.
    public func movement(linkBytesPerSecond: Double, horizonSeconds: Double) -> MovementCost? {
        switch self {
        case .initial: nil
        case .recovery: .recovery(linkBytesPerSecond: linkBytesPerSecond)
        case .growth, .rebalance: MovementCost(linkBytesPerSecond: linkBytesPerSecond, paybackSeconds: horizonSeconds)
        }
    }
}

/// A worker's health as the coordinator sees it.
public enum WorkerHealth: String, Sendable, Equatable {
    /// Heard from within two heartbeat intervals.
    case healthy
    /// Silent for more than two intervals (not lost yet).
    case suspect
    /// Being drained.
    case draining
}

/// Settings of an assignment that do not depend on the worker.
public struct AssignmentTemplate: Sendable, Equatable {
    /// Model file name (for logs).
    public var modelName: String
    /// SHA-256 of the model file.
    public var modelSHA256: String
    /// Model file size, bytes.
    public var modelSize: UInt64
    /// Transformer blocks in the model.
    public var modelLayerCount: Int
    /// The coordinator's result endpoint (the last stage's next hop; where failures are reported).
    public var resultAddress: String
    /// CURVE public key of the result socket (the coordinator's; empty in plain mode).
    public var resultPublicKey: String = ""
    /// Activation element type between stages.
    public var activationDType: TensorDType
    /// Positions per sequence every stage's KV cache holds.
    public var maxContextTokens: Int
    /// Sequences per step.
    public var maxBatchSequences: Int
    /// Rows per step.
    public var maxBatchTokens: Int

    /// Creates a template.
    public init(modelName: String, modelSHA256: String, modelSize: UInt64, modelLayerCount: Int, resultAddress: String,
                activationDType: TensorDType, maxContextTokens: Int, maxBatchSequences: Int, maxBatchTokens: Int) {
        self.modelName = modelName
        self.modelSHA256 = modelSHA256
        self.modelSize = modelSize
        self.modelLayerCount = modelLayerCount
        self.resultAddress = resultAddress
        self.activationDType = activationDType
        self.maxContextTokens = maxContextTokens
        self.maxBatchSequences = maxBatchSequences
        self.maxBatchTokens = maxBatchTokens
    }
}

/// The coordinator's view of its workers as a pure state machine: registration, planning when the
/// expected number of workers has joined, assignment, readiness, re-planning when a worker of the
/// plan is lost (heartbeat timeout), restarts, joins while serving, is drained, or when the
/// service asks for it (a failed step, a slow worker). It returns directives; the service does
/// the I/O. Every re-plan makes a new epoch; when the survivors cannot hold the model the cluster
/// waits (jobs stay queued) until a worker joins.
public struct Membership: Sendable {
    /// The cluster's phase.
    public enum Phase: Sendable, Equatable {
        /// Waiting for `expectedWorkers` registrations (before the first plan).
        case gathering
        /// Assignments sent for `epoch`, waiting for every stage to be ready.
        case assigning(epoch: UInt64, stages: [StageAssignment], peers: [PeerID])
        /// Every stage of `epoch` is ready: jobs are served.
        case serving(epoch: UInt64, stages: [StageAssignment], peers: [PeerID])
        /// No plan is possible now (`reason`); jobs wait; a joining worker makes it try again.
        case waiting(reason: String)
    }

    /// What the service must do.
    public enum Directive: Sendable, Equatable {
        /// Answer a Register.
        case acknowledge(PeerID, accepted: Bool, reason: String)
        /// Compute a plan over `workers` (in join order) and call ``Membership/planned(_:template:)``
        /// (or ``Membership/planFailed(_:)``).
        case plan(workers: [Member])
        /// Send `assignment` to `peer`.
        case assign(PeerID, StageAssignment)
        /// The pipeline of `epoch` is ready: start serving jobs on it.
        case serve(epoch: UInt64, stages: [StageAssignment], peers: [PeerID])
        /// No plan is possible now: jobs wait, with `reason`.
        case fail(reason: String)
        /// The running plan is being replaced: stop serving it (its jobs wait and are replayed on
        /// the next one). A `.plan` follows.
        case replan(reason: String)
        /// Send `Drain` (exit) to a drained worker that no plan uses any more.
        case release(PeerID, workerID: String)
    }

    /// Workers to wait for before the first plan.
    public let expectedWorkers: Int
    /// SHA-256 of the model every worker must hold.
    public let modelSHA256: String
    /// Silence after which a worker is lost, milliseconds.
    public let heartbeatTimeout: UInt64
    /// Silence after which a worker is suspect, milliseconds.
    public let suspectAfter: UInt64
    /// How long a worker joining a serving cluster must be heard steadily before it gets layers,
    /// milliseconds (0 = at once). A re-plan costs every running job a replay; a worker that just
    /// came back from a freeze or a flapping link would otherwise cause two re-plans in a row, or
    /// one per flap.
    public let joinSettle: UInt64
    /// Registered workers in join order.
    public private(set) var members: [Member] = []
    /// The phase.
    public private(set) var phase: Phase = .gathering
    /// Plans made (and times no plan was possible), oldest first; the last ``keptHistory`` are kept.
    public private(set) var planHistory: [PlanRecord] = []
    /// Workers lost (by missing heartbeats or a closed connection), most recent last; the last
    /// ``keptHistory`` are kept.
    public private(set) var lostMembers: [Member] = []
    /// How long a worker whose control connection its own end closed may take to connect again
    /// before it is lost, milliseconds (nil = closures are left to the heartbeat timeout).
    public let connectionGrace: UInt64?
    /// How many plan records and lost workers are kept.
    public static let keptHistory = 32
    /// The latest `now` seen (the time recorded with plans).
    public private(set) var clock: UInt64 = 0
    /// Whether a plan has served since the start (afterwards every change re-plans at once).
    public private(set) var hasServed = false
    private var lastEpoch: UInt64
    private var pendingReason = "initial plan"
    /// Why the pending plan is made.
    public private(set) var pendingPurpose = PlanPurpose.initial
    /// What each worker id held when last seen (a worker that comes back keeps its layer cache).
    private var knownHoldings: [String: LayerHoldings] = [:]
    /// Workers the pending plan leaves out for unsteady heartbeats.
    private var leftOutUnsteady: [PeerID] = []

    /// A membership waiting for `expectedWorkers` workers that hold the model `modelSHA256`;
    /// epochs continue after `lastEpoch` (persisted across restarts).
    public init(expectedWorkers: Int, modelSHA256: String, heartbeatTimeout: UInt64, suspectAfter: UInt64? = nil,
                joinSettle: UInt64 = 0, connectionGrace: UInt64? = 250, lastEpoch: UInt64 = 0) {
        self.expectedWorkers = max(1, expectedWorkers)
        self.modelSHA256 = modelSHA256
        self.heartbeatTimeout = heartbeatTimeout
        self.connectionGrace = connectionGrace
        self.suspectAfter = suspectAfter ?? heartbeatTimeout / 3
        self.joinSettle = joinSettle
        self.lastEpoch = lastEpoch
    }

    /// The current plan epoch (0 = none yet).
    public var epoch: UInt64 {
        switch phase {
        case .assigning(let e, _, _), .serving(let e, _, _): e
        default: lastEpoch
        }
    }

    private var planPeers: [PeerID] {
        switch phase {
        case .assigning(_, _, let peers), .serving(_, _, let peers): peers
        default: []
        }
    }

    /// Health of a member at `now`.
    public func health(_ member: Member, now: UInt64) -> WorkerHealth {
        if member.draining { return .draining }
        return now > member.lastSeen && now - member.lastSeen > suspectAfter ? .suspect : .healthy
    }

    /// A worker registered (first time, after a restart, or again after the coordinator was
    /// silent: then `runningEpoch` names the epoch it still runs).
    public mutating func register(peer: PeerID, workerID: String, dataAddress: String, dataPublicKey: String = "",
                                  memoryBytes: UInt64, speed: Double, heldModels: [String], cachedLayers: [CachedLayers] = [],
                                  standbyBudgetBytes: UInt64 = 0, runningEpoch: UInt64 = 0, now: UInt64) -> [Directive] {
        clock = max(clock, now)
        // A worker without the model file is accepted: it pulls its layers from the coordinator.
        var member = Member(workerID: workerID, peer: peer, dataAddress: dataAddress, dataPublicKey: dataPublicKey,
                            memoryBytes: memoryBytes, speed: speed, lastSeen: now)
        member.holdings = knownHoldings[workerID] ?? LayerHoldings()
        member.holdings.wholeFile = heldModels.contains(modelSHA256)
        member.standbyBudgetBytes = standbyBudgetBytes
        for c in cachedLayers where c.modelSHA256 == modelSHA256 { member.holdings.add(cached: c) }
        let ack = Directive.acknowledge(peer, accepted: true, reason: "")
        // One connection is one worker: a peer registered under another id may not take this one
        // too (two members with one id would confuse every table keyed by worker id).
        if let other = members.first(where: { $0.peer == peer && $0.workerID != workerID }) {
            return [.acknowledge(peer, accepted: false,
                                 reason: "this connection is registered as worker \(other.workerID); it cannot register as \(workerID)")]
        }
        knownHoldings[workerID] = member.holdings
        if let i = members.firstIndex(where: { $0.workerID == workerID || $0.peer == peer }) {
            let old = members[i]
            let inPlan = planPeers.contains(old.peer)
            if inPlan, old.peer == peer, old.dataAddress == dataAddress {
                // The same process (workers keep one control identity per process) registering
                // again after a silence: it kept its stage. A lost assignment is sent again from
                // its heartbeats.
                member.readyEpoch = old.readyEpoch
                member.stageMemoryBytes = old.stageMemoryBytes
                member.assignedAt = old.assignedAt
                member.heardSince = old.heardSince
                member.lastGapAt = old.lastGapAt
                member.lastBeat = old.lastBeat
                member.lastHeartbeatGap = old.lastHeartbeatGap
                member.lastLinkGapAt = old.lastLinkGapAt
                member.standby = old.standby
                let file = member.holdings.wholeFile
                member.holdings = old.holdings
                member.holdings.wholeFile = file
                for c in cachedLayers where c.modelSHA256 == modelSHA256 { member.holdings.add(cached: c) }
                knownHoldings[workerID] = member.holdings
                members[i] = member
                return [ack]
            }
            if inPlan, runningEpoch != 0, runningEpoch == epoch, old.readyEpoch == epoch, old.dataAddress == dataAddress {
                // The same worker, still running this plan's stage: only its connection changed.
                member.readyEpoch = old.readyEpoch
                member.stageMemoryBytes = old.stageMemoryBytes
                members[i] = member
                replacePeer(old.peer, with: peer)
                return [ack]
            }
            members[i] = member
            if inPlan { return [ack] + replan("worker \(workerID) registered again (restarted)", now: now) }
        } else {
            members.append(member)
        }
        if hasServed || phase != .gathering {
            // Jobs are waiting for capacity: use the worker at once. Otherwise let it settle first.
            if case .waiting = phase { return [ack] + replan("worker \(workerID) joined", now: now, purpose: .growth) }
            if joinSettle == 0 { return [ack] + replan("worker \(workerID) joined", now: now, purpose: .growth) }
            if let i = members.firstIndex(where: { $0.peer == peer }) { members[i].awaitingPlan = true }
            return [ack]
        }
        guard members.count >= expectedWorkers else { return [ack] }
        pendingReason = "initial plan over \(members.count) workers"
        pendingPurpose = .initial
        return [ack, .plan(workers: plannable)]
    }

    private var plannable: [Member] { members.filter { !$0.draining && !$0.loadFailed } }

    private mutating func replacePeer(_ old: PeerID, with new: PeerID) {
        switch phase {
        case let .assigning(e, stages, peers): phase = .assigning(epoch: e, stages: stages, peers: peers.map { $0 == old ? new : $0 })
        case let .serving(e, stages, peers): phase = .serving(epoch: e, stages: stages, peers: peers.map { $0 == old ? new : $0 })
        default: break
        }
    }

    /// Re-plans now over the plannable workers for `reason` (a failed step, a slow worker, an
    /// operator), for `purpose`. No-op before the first plan.
    public mutating func replan(_ reason: String, now: UInt64, purpose: PlanPurpose = .recovery) -> [Directive] {
        guard hasServed || phase != .gathering else { return [] }
        let wasRunning = !planPeers.isEmpty
        phase = .gathering
        pendingReason = reason
        pendingPurpose = purpose
        // This plan counts every plannable worker, those still settling included, except workers
        // silent for half the heartbeat timeout now (likely the fault itself, not declared lost
        // yet) and workers whose link delayed or lost heartbeats within the settle time (a lossy
        // or flapping link would stall the new pipeline too): they rejoin once steady. A worker
        // that only sent late (busy, or briefly stopped) is healthy and stays. If only unsteady
        // workers are left, or the steady ones cannot hold the model (``planFailed(_:now:)``),
        // all are used.
        for i in members.indices { members[i].awaitingPlan = false }
        var out: [Directive] = wasRunning ? [.replan(reason: reason)] : []
        var workers = plannable
        let steady = workers.filter { !isUnsteady($0, now: now) }
        leftOutUnsteady = []
        if !steady.isEmpty, steady.count < workers.count {
            leftOutUnsteady = workers.filter { isUnsteady($0, now: now) }.map(\.peer)
            for i in members.indices where leftOutUnsteady.contains(members[i].peer) { members[i].awaitingPlan = true }
            workers = steady
        }
        if workers.isEmpty {
            out += waitFor("\(reason); no workers left to plan over", now: now)
        } else {
            out.append(.plan(workers: workers))
        }
        return out
    }

    /// The service computed `plan` (from a `.plan` directive): assign each stage to its worker.
    public mutating func planned(_ plan: PipelinePlan, template: AssignmentTemplate, now: UInt64 = 0) -> [Directive] {
        guard phase == .gathering else { return [] }
        var peers: [PeerID] = []
        var workers: [Member] = []
        for stage in plan.stages {
            guard let m = members.first(where: { $0.workerID == stage.workerID }) else {
                return waitFor("the plan names an unknown worker \(stage.workerID)", now: now)
            }
            peers.append(m.peer)
            workers.append(m)
        }
        lastEpoch += 1
        leftOutUnsteady = []
        let epoch = lastEpoch
        var assignments: [StageAssignment] = []
        for (i, stage) in plan.stages.enumerated() {
            let next = i + 1 < workers.count ? workers[i + 1].dataAddress : template.resultAddress
            let nextKey = i + 1 < workers.count ? workers[i + 1].dataPublicKey : template.resultPublicKey
            var assignment = StageAssignment(
                planEpoch: epoch, modelName: template.modelName, modelSHA256: template.modelSHA256,
                modelSize: template.modelSize, modelLayerCount: template.modelLayerCount, layers: stage.layers,
                stageIndex: i, stageCount: plan.stages.count, nextHop: next, resultAddress: template.resultAddress,
                activationDType: template.activationDType, maxContextTokens: template.maxContextTokens,
                maxBatchSequences: template.maxBatchSequences, maxBatchTokens: template.maxBatchTokens)
            assignment.nextHopPublicKey = nextKey
            // The stage's data socket admits the coordinator (it feeds stage 0), the worker of the
            // stage before it (its steps) and the one of the stage after it (the KV rows it mirrors
            // here when this worker keeps a standby copy of its layers), with the keys their data
            // sockets use (empty in plain mode).
            let previousKey = i > 0 ? workers[i - 1].dataPublicKey : ""
            let followingKey = i + 1 < workers.count ? workers[i + 1].dataPublicKey : ""
            assignment.dataClientKeys = [template.resultPublicKey, previousKey, followingKey].filter { !$0.isEmpty }
            assignments.append(assignment)
        }
        phase = .assigning(epoch: epoch, stages: assignments, peers: peers)
        clock = max(clock, now)
        for i in members.indices where peers.contains(members[i].peer) { members[i].assignedAt = clock }
        remember(PlanRecord(epoch: epoch, atMs: clock, reason: pendingReason, stages: plan.stages))
        return zip(peers, assignments).map { .assign($0, $1) }
    }

    /// Planning failed (the workers cannot hold the model): wait for a worker to join.
    public mutating func planFailed(_ reason: String, now: UInt64 = 0) -> [Directive] {
        guard phase == .gathering else { return [] }
        if !leftOutUnsteady.isEmpty {
            // The steady workers alone cannot hold the model: take the unsteady ones too.
            for i in members.indices where leftOutUnsteady.contains(members[i].peer) { members[i].awaitingPlan = false }
            leftOutUnsteady = []
            return [.plan(workers: plannable)]
        }
        return waitFor("\(pendingReason): \(reason)", now: now)
    }

    /// Whether a re-plan should leave `member` out: its control connection closed (it is likely
    /// gone, not lost yet), it is silent now for longer than half the heartbeat timeout (and the
    /// suspect time), or its link delayed or lost heartbeats within the join-settle time. A gap the worker made itself (it sent late: no CPU for a while) does not
    /// count (``HeartbeatGap``); a worker just a little late (starved for a moment) stays in.
    private func isUnsteady(_ member: Member, now: UInt64) -> Bool {
        if member.connectionClosedAt != nil { return true }
        if now > member.lastSeen, now - member.lastSeen > max(suspectAfter, heartbeatTimeout / 2) { return true }
        guard joinSettle > 0, let gap = member.lastLinkGapAt else { return false }
        return now >= gap && now - gap < joinSettle
    }

    /// A worker reported on its assignment.
    public mutating func assignmentReady(peer: PeerID, epoch: UInt64, error: String?, memoryBytes: UInt64 = 0,
                                         now: UInt64) -> [Directive] {
        touch(peer, now: now)
        guard case let .assigning(current, stages, peers) = phase, epoch == current,
              let index = members.firstIndex(where: { $0.peer == peer }), peers.contains(peer) else { return [] }
        if let error {
            members[index].loadFailed = true
            return replan("worker \(members[index].workerID) could not load its stage: \(error)", now: now)
        }
        members[index].readyEpoch = epoch
        if memoryBytes > 0 { members[index].stageMemoryBytes = memoryBytes }
        if let stage = peers.firstIndex(of: peer) {
            members[index].holdings.add(stage: stages[stage].layers, layerCount: stages[stage].modelLayerCount)
            knownHoldings[members[index].workerID] = members[index].holdings
        }
        let allReady = peers.allSatisfy { p in members.contains { $0.peer == p && $0.readyEpoch == epoch } }
        guard allReady else { return [] }
        phase = .serving(epoch: epoch, stages: stages, peers: peers)
        hasServed = true
        if let i = planHistory.lastIndex(where: { $0.epoch == epoch }) { planHistory[i].served = true }
        var out: [Directive] = [.serve(epoch: epoch, stages: stages, peers: peers)]
        // Drained workers the new plan does not use may go now.
        for m in members where m.draining && !peers.contains(m.peer) { out.append(.release(m.peer, workerID: m.workerID)) }
        members.removeAll { m in m.draining && !peers.contains(m.peer) }
        return out
    }

    /// Any message from `peer` shows it is alive.
    public mutating func touch(_ peer: PeerID, now: UInt64) {
        clock = max(clock, now)
        guard let i = members.firstIndex(where: { $0.peer == peer }) else { return }
        // A gap longer than the suspect time restarts the settling of a joining worker.
        if now > members[i].lastSeen, now - members[i].lastSeen > suspectAfter {
            members[i].heardSince = now
            members[i].lastGapAt = now
        }
        members[i].lastSeen = max(members[i].lastSeen, now)
    }

    /// A worker's heartbeat: its step statistics and free memory (also shows it is alive), and
    /// the plan epoch it runs or loads (`loading`). While a plan is being loaded, a worker of it
    /// that neither loads it nor has reported it ready for a second (its assignment, or its
    /// `AssignmentReady`, was lost with a broken connection) is sent its assignment again; a
    /// worker already running that epoch answers it with `AssignmentReady` again.
    /// `sequence` and `sentUnixMs` (the worker's own, 0 = not reported) tell whether a gap before
    /// this heartbeat was made by the worker or by its link (``HeartbeatGap``). `pull` is the
    /// pull of layers it runs (nil = none); `cachedLayers` what its layer cache holds (added to
    /// its holdings, so the next movement-aware plan counts them as already there).
    @discardableResult
    public mutating func heartbeat(peer: PeerID, stepsRun: UInt64, recentStepMs: Float, recentRowsPerStep: Float,
                                   freeMemoryBytes: UInt64, planEpoch: UInt64 = 0, loading: Bool = false,
                                   sequence: UInt64 = 0, sentUnixMs: UInt64 = 0, pull: PullProgress? = nil,
                                   cachedLayers: [CachedLayers] = [], now: UInt64) -> [Directive] {
        touch(peer, now: now)
        guard let i = members.firstIndex(where: { $0.peer == peer }) else { return [] }
        let mark = HeartbeatMark(arrivedAt: now, sentUnixMs: sentUnixMs, sequence: sequence)
        if let previous = members[i].lastBeat, let gap = HeartbeatGap.between(previous, mark, suspectAfter: suspectAfter) {
            members[i].lastHeartbeatGap = gap
            if gap.kind == .link { members[i].lastLinkGapAt = now }
        }
        if members[i].lastBeat.map({ now >= $0.arrivedAt }) ?? true { members[i].lastBeat = mark }
        members[i].stepsRun = stepsRun
        members[i].recentStepMs = recentStepMs
        members[i].recentRowsPerStep = recentRowsPerStep
        if freeMemoryBytes > 0 { members[i].freeMemoryBytes = freeMemoryBytes }
        members[i].pull = pull
        let relevant = cachedLayers.filter { $0.modelSHA256 == modelSHA256 }
        if !relevant.isEmpty {
            for c in relevant { members[i].holdings.add(cached: c) }
            knownHoldings[members[i].workerID] = members[i].holdings
        }
        guard case let .assigning(epoch, stages, peers) = phase, let stage = peers.firstIndex(of: peer),
              members[i].readyEpoch != epoch, !(loading && planEpoch == epoch),
              now >= members[i].assignedAt, now - members[i].assignedAt >= Self.assignmentResend else { return [] }
        members[i].assignedAt = now
        return [.assign(peer, stages[stage])]
    }

    /// How long a worker of a plan being loaded may show no sign of it before its assignment is
    /// sent again, milliseconds.
    public static let assignmentResend: UInt64 = 1000

    /// The standby copies placed for the plan of `epoch` (``Planner/standby(for:workers:budgets:model:contextTokens:batchSequences:overheadBytes:)``):
    /// recorded on each member (for status; a member without copies gets nil). Ignored when
    /// another plan is current.
    public mutating func placedStandby(_ copies: [String: StandbyCopies], epoch: UInt64) {
        guard self.epoch == epoch else { return }
        for i in members.indices { members[i].standby = copies[members[i].workerID] }
    }

    /// A worker reported the memory its loaded stage uses.
    public mutating func stageMemory(peer: PeerID, bytes: UInt64) {
        if let i = members.firstIndex(where: { $0.peer == peer }) { members[i].stageMemoryBytes = bytes }
    }

    /// Whether `peer` is a registered worker.
    public func isMember(_ peer: PeerID) -> Bool { members.contains { $0.peer == peer } }

    /// Time passed: workers silent for longer than the timeout are lost; losing one of the plan
    /// re-plans over the others. A worker that joined a serving plan and has been heard steadily
    /// for the join-settle time re-plans with it.
    public mutating func tick(now: UInt64) -> [Directive] {
        expire(now: now).directives
    }

    /// A worker declared lost, and why.
    public struct Loss: Sendable, Equatable {
        /// Why.
        public enum Cause: Sendable, Equatable {
            /// Silent for longer than the heartbeat timeout.
            case heartbeatTimeout
            /// Its control connection was closed by its own end and it did not connect again
            /// within the grace.
            case connectionClosed
        }

        /// The worker as it was last known.
        public var member: Member
        /// Why it was lost.
        public var cause: Cause
        /// Time since its last message, milliseconds.
        public var silentMs: UInt64
        /// Time since its connection closed (``Cause/connectionClosed`` only), milliseconds.
        public var closedMs: UInt64?

        /// Why, for logs and re-plan reasons.
        public var reason: String {
            switch cause {
            case .heartbeatTimeout: "no heartbeat for \(silentMs) ms"
            case .connectionClosed: "its connection closed \(closedMs ?? 0) ms ago and it did not connect again"
            }
        }
    }

    /// What ``expire(now:)`` found: the workers lost and what the service must do.
    public struct Expiry: Sendable, Equatable {
        /// Workers lost now.
        public var losses: [Loss]
        /// Directives (a re-plan when a worker of the plan was lost).
        public var directives: [Directive]
    }

    /// ``tick(now:)`` with the workers it declared lost: a worker is lost once silent for longer
    /// than the heartbeat timeout, or once its control connection has been closed by its own end
    /// for the connection grace without a new one (``connectionClosed(peer:now:)``). Both take the
    /// same path: removed, remembered in ``lostMembers``, and a re-plan when it was in the plan.
    public mutating func expire(now: UInt64) -> Expiry {
        clock = max(clock, now)
        let losses = members.compactMap { m -> Loss? in
            let silent = now > m.lastSeen ? now - m.lastSeen : 0
            if let grace = connectionGrace, let closed = m.connectionClosedAt, now >= closed, now - closed >= grace {
                return Loss(member: m, cause: .connectionClosed, silentMs: silent, closedMs: now - closed)
            }
            return silent > heartbeatTimeout ? Loss(member: m, cause: .heartbeatTimeout, silentMs: silent) : nil
        }
        guard !losses.isEmpty else { return Expiry(losses: [], directives: settledJoin(now: now)) }
        members.removeAll { m in losses.contains { $0.member.peer == m.peer } }
        lostMembers = Array((lostMembers + losses.map(\.member)).suffix(Self.keptHistory))
        let inPlan = planPeers
        guard let gone = losses.first(where: { inPlan.contains($0.member.peer) }) else {
            return Expiry(losses: losses, directives: settledJoin(now: now))
        }
        return Expiry(losses: losses, directives: replan("worker \(gone.member.workerID) lost (\(gone.reason))", now: now))
    }

    /// The control connection of `peer` was closed by its own end (``PeerConnectionEvent``'s
    /// `peerEnded`: its process exited or was killed, or it is making the connection again).
    /// Unless it connects again within ``connectionGrace`` it is lost (``expire(now:)``); a
    /// re-plan meanwhile leaves it out. Returns its worker id, nil when `peer` is no worker or
    /// closures are left to the heartbeat timeout.
    public mutating func connectionClosed(peer: PeerID, now: UInt64) -> String? {
        clock = max(clock, now)
        guard connectionGrace != nil, let i = members.firstIndex(where: { $0.peer == peer }) else { return nil }
        if members[i].connectionClosedAt == nil { members[i].connectionClosedAt = now }
        return members[i].workerID
    }

    /// `peer`'s messages arrive on a new connection: a closure noted before is forgotten.
    /// Returns its worker id and how long it had been closed when it had been, else nil.
    public mutating func connectionOpened(peer: PeerID, now: UInt64) -> (workerID: String, closedMs: UInt64)? {
        clock = max(clock, now)
        guard let i = members.firstIndex(where: { $0.peer == peer }), let closed = members[i].connectionClosedAt else { return nil }
        members[i].connectionClosedAt = nil
        return (members[i].workerID, now > closed ? now - closed : 0)
    }

    /// Workers whose key lost the worker role (removed from the allow-list): dropped like lost
    /// workers; losing one of the plan re-plans over the others.
    public mutating func revoke(where revoked: (Member) -> Bool, now: UInt64) -> (directives: [Directive], removed: [Member]) {
        clock = max(clock, now)
        let gone = members.filter(revoked)
        guard !gone.isEmpty else { return ([], []) }
        members.removeAll(where: revoked)
        lostMembers = Array((lostMembers + gone).suffix(Self.keptHistory))
        let inPlan = planPeers
        guard let first = gone.first(where: { inPlan.contains($0.peer) }) else { return ([], gone) }
        return (replan("worker \(first.workerID)'s key was removed from the worker allow-list", now: now), gone)
    }

    /// Workers that joined while serving wait until they have been heard steadily for
    /// ``joinSettle``; then one re-plan takes them all in.
    private mutating func settledJoin(now: UInt64) -> [Directive] {
        guard case .serving = phase else { return [] }
        let settled = members.filter {
            $0.awaitingPlan && !$0.draining && !$0.loadFailed && now >= $0.heardSince && now - $0.heardSince >= joinSettle
                && health($0, now: now) == .healthy
        }
        guard let first = settled.first else { return [] }
        let names = settled.map(\.workerID).joined(separator: ", ")
        return replan("worker\(settled.count > 1 ? "s" : "") \(names) joined (heard steadily for \(now - first.heardSince) ms)", now: now,
                      purpose: .growth)
    }

    /// Why a drain request is refused.
    public enum DrainRefusal: Error, Equatable, CustomStringConvertible, Sendable {
        case unknownWorker(String)
        case lastWorker(String)
        public var description: String {
            switch self {
            case .unknownWorker(let id): "no worker \(id) is registered"
            case .lastWorker(let id): "\(id) is the only worker left: nothing could take its layers"
            }
        }
    }

    /// An operator drains `workerID`: its layers move to the others (a re-plan without it); once
    /// that plan serves the worker is released. The caller checks first that the others can hold
    /// the model (``Planner``).
    public mutating func drain(_ workerID: String, now: UInt64) throws(DrainRefusal) -> [Directive] {
        guard let i = members.firstIndex(where: { $0.workerID == workerID }) else { throw .unknownWorker(workerID) }
        guard plannable.contains(where: { $0.workerID != workerID }) else { throw .lastWorker(workerID) }
        members[i].draining = true
        let peer = members[i].peer
        guard planPeers.contains(peer) else {
            members.remove(at: i)
            return [.release(peer, workerID: workerID)]
        }
        return replan("operator drained \(workerID)", now: now)
    }

    private mutating func waitFor(_ reason: String, now: UInt64) -> [Directive] {
        if case .waiting(let r) = phase, r == reason { return [] }
        phase = .waiting(reason: reason)
        clock = max(clock, now)
        remember(PlanRecord(epoch: 0, atMs: clock, reason: "no plan: \(reason)", stages: []))
        return [.fail(reason: reason)]
    }

    private mutating func remember(_ record: PlanRecord) {
        planHistory.append(record)
        if planHistory.count > Self.keptHistory { planHistory.removeFirst(planHistory.count - Self.keptHistory) }
    }
}
