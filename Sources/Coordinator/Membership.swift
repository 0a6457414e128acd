import CaravanCore
import CaravanWire
import ClusterSupport

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
    /// Being drained on an operator's request.
    public var draining = false
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
/// expected number of workers has joined, assignment, readiness, and loss by missing heartbeats.
/// It returns directives; the service does the I/O. A worker of the running plan that is lost
/// makes it re-plan over the workers left (with a new epoch); after a failure, a new registration
/// makes it try again.
public struct Membership: Sendable {
    /// The cluster's phase.
    public enum Phase: Sendable, Equatable {
        /// Waiting for `expectedWorkers` registrations.
        case gathering
        /// Assignments sent for `epoch`, waiting for every stage to be ready.
        case assigning(epoch: UInt64, stages: [StageAssignment], peers: [PeerID])
        /// Every stage of `epoch` is ready: jobs are accepted.
        case serving(epoch: UInt64, stages: [StageAssignment], peers: [PeerID])
        /// The cluster cannot serve; `reason` says why.
        case failed(reason: String)
    }

    /// What the service must do.
    public enum Directive: Sendable, Equatable {
        /// Answer a Register.
        case acknowledge(PeerID, accepted: Bool, reason: String)
        /// Enough workers: compute a plan over `workers` (in join order) and call ``Membership/planned(_:template:)``.
        case plan(workers: [Member])
        /// Send `assignment` to `peer`.
        case assign(PeerID, StageAssignment)
        /// The pipeline of `epoch` is ready: start accepting jobs.
        case serve(epoch: UInt64, stages: [StageAssignment], peers: [PeerID])
        /// The cluster failed (plan impossible, load failed, no workers left).
        case fail(reason: String)
        /// The running plan lost a worker: stop serving it (its jobs fail with `reason`); a
        /// `.plan` over the remaining workers follows.
        case replan(reason: String)
    }

    /// Workers to wait for before planning.
    public let expectedWorkers: Int
    /// SHA-256 of the model every worker must hold.
    public let modelSHA256: String
    /// Silence after which a worker is lost, milliseconds.
    public let heartbeatTimeout: UInt64
    /// Registered workers in join order.
    public private(set) var members: [Member] = []
    /// The phase.
    public private(set) var phase: Phase = .gathering
    private var lastEpoch: UInt64 = 0
    /// Plans made (and failures), oldest first; the last ``keptHistory`` are kept.
    public private(set) var planHistory: [PlanRecord] = []
    /// Workers lost by missing heartbeats, most recent last; the last ``keptHistory`` are kept.
    public private(set) var lostMembers: [Member] = []
    /// How many plan records and lost workers are kept.
    public static let keptHistory = 32
    /// The reason recorded with the next plan.
    private var nextPlanReason = "initial plan"
    /// The latest `now` seen (the time recorded with plans).
    public private(set) var clock: UInt64 = 0

    /// A membership waiting for `expectedWorkers` workers that hold the model `modelSHA256`.
    public init(expectedWorkers: Int, modelSHA256: String, heartbeatTimeout: UInt64) {
        self.expectedWorkers = max(1, expectedWorkers)
        self.modelSHA256 = modelSHA256
        self.heartbeatTimeout = heartbeatTimeout
    }

    /// A worker registered.
    public mutating func register(peer: PeerID, workerID: String, dataAddress: String, dataPublicKey: String = "",
                                  memoryBytes: UInt64, speed: Double, heldModels: [String], now: UInt64) -> [Directive] {
        clock = max(clock, now)
        // A worker without the model file is accepted: it pulls its layers from the coordinator.
        if let i = members.firstIndex(where: { $0.workerID == workerID || $0.peer == peer }) {
            if case .failed = phase { phase = .gathering }
            guard phase == .gathering else {
                return [.acknowledge(peer, accepted: false, reason: "worker id \(workerID) is already part of the running plan")]
            }
            members.remove(at: i)
        }
        if case .failed = phase { phase = .gathering }  // a new worker may make a plan possible
        guard phase == .gathering else {
            return [.acknowledge(peer, accepted: false, reason: "the cluster is already planned (workers join at the next re-plan)")]
        }
        members.append(Member(workerID: workerID, peer: peer, dataAddress: dataAddress, dataPublicKey: dataPublicKey,
                              memoryBytes: memoryBytes, speed: speed, lastSeen: now))
        var out: [Directive] = [.acknowledge(peer, accepted: true, reason: "")]
        if members.count >= expectedWorkers { out.append(.plan(workers: members)) }
        return out
    }

    /// The service computed `plan` (from a `.plan` directive): assign each stage to its worker.
    public mutating func planned(_ plan: PipelinePlan, template: AssignmentTemplate) -> [Directive] {
        guard phase == .gathering else { return [] }
        var peers: [PeerID] = []
        var workers: [Member] = []
        for stage in plan.stages {
            guard let m = members.first(where: { $0.workerID == stage.workerID }) else {
                return fail("the plan names an unknown worker \(stage.workerID)")
            }
            peers.append(m.peer)
            workers.append(m)
        }
        lastEpoch += 1
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
            assignments.append(assignment)
        }
        phase = .assigning(epoch: epoch, stages: assignments, peers: peers)
        remember(PlanRecord(epoch: epoch, atMs: clock, reason: nextPlanReason, stages: plan.stages))
        nextPlanReason = "re-plan"
        return zip(peers, assignments).map { .assign($0, $1) }
    }

    /// Planning failed.
    public mutating func planFailed(_ reason: String) -> [Directive] { fail(reason) }

    /// A worker reported on its assignment.
    public mutating func assignmentReady(peer: PeerID, epoch: UInt64, error: String?, now: UInt64) -> [Directive] {
        touch(peer, now: now)
        guard case let .assigning(current, stages, peers) = phase, epoch == current,
              let index = members.firstIndex(where: { $0.peer == peer }), peers.contains(peer) else { return [] }
        if let error { return fail("worker \(members[index].workerID) could not load its stage: \(error)") }
        members[index].readyEpoch = epoch
        let allReady = peers.allSatisfy { p in members.contains { $0.peer == p && $0.readyEpoch == epoch } }
        guard allReady else { return [] }
        phase = .serving(epoch: epoch, stages: stages, peers: peers)
        if let i = planHistory.lastIndex(where: { $0.epoch == epoch }) { planHistory[i].served = true }
        return [.serve(epoch: epoch, stages: stages, peers: peers)]
    }

    /// Any message from `peer` shows it is alive.
    public mutating func touch(_ peer: PeerID, now: UInt64) {
        clock = max(clock, now)
        if let i = members.firstIndex(where: { $0.peer == peer }) { members[i].lastSeen = max(members[i].lastSeen, now) }
    }

    /// Time passed: workers silent for longer than the timeout are lost.
    public mutating func tick(now: UInt64) -> [Directive] {
        clock = max(clock, now)
        let lost = members.filter { now > $0.lastSeen && now - $0.lastSeen > heartbeatTimeout }
        guard !lost.isEmpty else { return [] }
        members.removeAll { m in lost.contains { $0.peer == m.peer } }
        lostMembers = Array((lostMembers + lost).suffix(Self.keptHistory))
        let inPlan: [PeerID]
        switch phase {
        case .assigning(_, _, let peers), .serving(_, _, let peers): inPlan = peers
        default: inPlan = []
        }
        guard let gone = lost.first(where: { inPlan.contains($0.peer) }) else { return [] }
        let reason = "worker \(gone.workerID) stopped sending heartbeats (lost)"
        nextPlanReason = reason
        phase = .gathering
        guard !members.isEmpty else { return [.replan(reason: reason)] + fail("\(reason); no workers left") }
        return [.replan(reason: reason), .plan(workers: members)]
    }

    private mutating func fail(_ reason: String) -> [Directive] {
        if case .failed = phase { return [] }
        phase = .failed(reason: reason)
        remember(PlanRecord(epoch: 0, atMs: clock, reason: "failed: \(reason)", stages: []))
        nextPlanReason = "retry after a failure"
        return [.fail(reason: reason)]
    }

    /// A worker's heartbeat: its step statistics and free memory (also shows it is alive).
    public mutating func heartbeat(peer: PeerID, stepsRun: UInt64, recentStepMs: Float, recentRowsPerStep: Float,
                                   freeMemoryBytes: UInt64, now: UInt64) {
        touch(peer, now: now)
        guard let i = members.firstIndex(where: { $0.peer == peer }) else { return }
        members[i].stepsRun = stepsRun
        members[i].recentStepMs = recentStepMs
        members[i].recentRowsPerStep = recentRowsPerStep
        if freeMemoryBytes > 0 { members[i].freeMemoryBytes = freeMemoryBytes }
    }

    /// A worker reported the memory its loaded stage uses.
    public mutating func stageMemory(peer: PeerID, bytes: UInt64) {
        if let i = members.firstIndex(where: { $0.peer == peer }) { members[i].stageMemoryBytes = bytes }
    }

    /// Sets the reason recorded with the next plan (e.g. "worker w3 joined", "drain w2").
    public mutating func nextPlan(reason: String) { nextPlanReason = reason }

    private mutating func remember(_ record: PlanRecord) {
        planHistory.append(record)
        if planHistory.count > Self.keptHistory { planHistory.removeFirst(planHistory.count - Self.keptHistory) }
    }
}
