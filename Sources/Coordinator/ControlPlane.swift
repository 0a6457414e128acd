import CaravanCore
import CaravanTransport
import CaravanWire
import Foundation
import Logging
import Planning

/// The coordinator's control socket (ROUTER): feeds workers' messages into the ``Membership``
/// state machine and carries out its directives (acknowledgements, planning, assignments,
/// serving, re-planning, releasing drained workers). It also re-plans when a pipeline step fails,
/// when an operator drains a worker, and when a worker has become slow enough that moving layers
/// pays (see ``RebalancePolicy``). Sends `ReleaseSequences` to every stage.
final class ControlPlane: Sendable {
    private let control: any Transport
    private let codec: WireCodec
    private let membership: LockedValue<Membership>
    private let facts: ModelFacts
    private let template: AssignmentTemplate
    private let configuration: CoordinatorConfiguration
    private let logger: Logger
    /// Lines a peer can cause, within a budget (``LogLimiter``).
    private let limited: LogLimiter
    private let desk: JobDesk
    private let serve: AsyncStream<ServeOrder>.Continuation
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    /// When the last plan was made (coordinator clock, ms), for the rebalancing interval.
    private let lastPlanAt = LockedValue<UInt64>(0)
    /// The slow-worker rule over time.
    private let slowWatch: LockedValue<SlowWatch>
    /// Measured speed of pulls, bytes per second (moving average over assignments that pulled).
    private let linkSpeed: LockedValue<Double>
    /// Bytes each worker of the plan being loaded must pull (to measure the link by its load time).
    private let expectedPulls = LockedValue<[String: UInt64]>([:])
    /// Each stage's work in the plan a re-plan for balance replaces (taken before the re-plan ends
    /// that plan's serving phase): the measured speeds of the plan to come are read against it.
    private let layersBeforeRebalance = LockedValue<[String: Double]>([:])
    /// The sequences the assignments of a plan epoch name as continuing (taken once per epoch,
    /// when its first assignment is sent, so that every stage and a resent assignment agree).
    private let continuing = LockedValue<(epoch: UInt64, sequences: [SequenceID: Int])>((0, [:]))
    /// What the stages of the plan being loaded hold of the continuing sequences.
    private let resumePoints = LockedValue(ResumePoints())
    /// Where each worker of the serving plan mirrors the KV rows of its layers (by worker id).
    private let placedMirrors = LockedValue<(epoch: UInt64, byWorker: [String: [KVMirrorTarget]])>((0, [:]))

    init(control: any Transport, codec: WireCodec, membership: LockedValue<Membership>, facts: ModelFacts,
         template: AssignmentTemplate, configuration: CoordinatorConfiguration, logger: Logger, desk: JobDesk,
         serve: AsyncStream<ServeOrder>.Continuation) {
        self.control = control
        self.codec = codec
        self.membership = membership
        self.facts = facts
        self.template = template
        self.configuration = configuration
        self.logger = logger
        self.limited = LogLimiter(logger: logger)
        self.desk = desk
        self.serve = serve
        self.origin = clock.now
        self.slowWatch = LockedValue(SlowWatch(sustainedSteps: configuration.rebalance.sustainedSteps,
                                               horizonSeconds: Double(JobDesk.milliseconds(configuration.rebalance.horizon)) / 1000))
        self.linkSpeed = LockedValue(configuration.rebalance.linkBytesPerSecond)
    }

    /// Milliseconds on the coordinator's clock.
    var now: UInt64 { UInt64(max(0, JobDesk.milliseconds(clock.now - origin))) }
    /// The clock ``Membership`` is fed with (milliseconds since start), for status reports.
    var elapsedMs: UInt64 { now }

    /// Handles one message from the control link.
    func handle(_ message: Delivery) async {
        let peer = PeerID(message.sender ?? [])
        let body: Caravan_V1_Envelope.OneOf_Body
        do {
            guard case .message(let b, _) = try codec.decode(message.frames) else {
                limited.warning("control socket: dropped a data message", key: message.identity ?? "\(peer)")
                return
            }
            body = b
        } catch {
            limited.warning("control socket: dropped a bad frame", key: message.identity ?? "\(peer)", metadata: ["reason": "\(error)"])
            return
        }
        let t = now
        var directives: [Membership.Directive] = []
        // ZAP admits only worker keys on this socket; checked again per message because the lists
        // may have changed since the connection was made.
        let caller = AccessList.caller(identity: message.identity, access: configuration.access)
        guard caller.roles.contains(.worker) else {
            limited.warning("control socket: dropped a message from a key that is not a worker's", key: caller.key,
                            metadata: ["key": "\(caller.key)", "roles": "\(caller.roles)"])
            return
        }
        switch body {
        case .register(let m) where configuration.access != nil && m.dataPublicKey != caller.key:
            // A worker uses one key pair for every connection: the key it announces for its data
            // socket (which results and assignments are checked against) must be the one it holds.
            directives = [.acknowledge(peer, accepted: false, reason:
                "worker \(m.workerID) announced the data key \(m.dataPublicKey) but connected with \(caller.key)")]
        case .hello(let m):
            membership.withLock { $0.touch(peer, now: t) }
            limited.info("hello", key: "\(peer)", metadata: ["node": "\(m.nodeID)", "role": "\(m.role)"])
            var hello = Caravan_V1_Hello()
            hello.protocolVersion = WireProtocol.version
            hello.role = .coordinator
            hello.nodeID = "coordinator"
            hello.softwareVersion = "caravan-coordinator 0.1"
            await send(.hello(hello), to: peer)
        case .register(let m):
            limited.info("register", key: "\(peer)", metadata: [
                "worker": "\(m.workerID)", "data": "\(m.dataAddress)", "memory": "\(m.capabilities.freeMemoryBytes)",
                "speed": "\(m.capabilities.measuredGflops)", "running_epoch": "\(m.runningPlanEpoch)",
            ])
            directives = membership.withLock {
                $0.register(peer: peer, workerID: m.workerID, dataAddress: m.dataAddress, dataPublicKey: m.dataPublicKey,
                            memoryBytes: m.capabilities.freeMemoryBytes, speed: m.capabilities.measuredGflops,
                            heldModels: m.capabilities.models.map(\.model.sha256),
                            cachedLayers: CachedLayers.fromWire(m.capabilities.cachedLayers),
                            standbyBudgetBytes: m.capabilities.standbyBudgetBytes, runningEpoch: m.runningPlanEpoch, now: t)
            }
            await resendStandby(to: peer)
        case .heartbeat(let m):
            let (next, gap) = membership.withLock { ms -> ([Membership.Directive], HeartbeatGap?) in
                let d = ms.heartbeat(peer: peer, stepsRun: m.stepsRun, recentStepMs: m.recentStepMs,
                                     recentRowsPerStep: m.recentRowsPerStep, freeMemoryBytes: m.freeMemoryBytes,
                                     planEpoch: m.planEpoch, loading: m.state == .loading, sequence: m.sequence,
                                     sentUnixMs: m.sentUnixMs, pull: m.hasPull ? PullProgress(wire: m.pull) : nil,
                                     cachedLayers: CachedLayers.fromWire(m.cachedLayers), now: t)
                let gap = ms.members.first { $0.peer == peer }?.lastHeartbeatGap
                return (d, gap?.at == t ? gap : nil)
            }
            directives = next
            if let gap {
                // Who made a gap decides whether the next re-plan may leave the worker out.
                limited.notice("heartbeat gap", key: "\(peer)", metadata: [
                    "worker": "\(m.senderID)", "gap_ms": "\(gap.milliseconds)", "delay_ms": "\(gap.delayMs)",
                    "made_by": "\(gap.kind.rawValue)",
                ])
            }
            if directives.contains(where: { if case .assign = $0 { true } else { false } }) {
                limited.notice("sending an assignment again", key: "\(peer)", metadata: ["epoch": "\(membership.withLock { $0.epoch })"])
            }
        case .assignmentReady(let m):
            limited.info("assignment ready", key: "\(peer)", metadata: [
                "worker": "\(m.workerID)", "epoch": "\(m.planEpoch)", "ready": "\(m.ready)", "error": "\(m.error)",
                "load_ms": "\(m.loadMs)",
            ])
            if m.ready { membership.withLock { $0.stageMemory(peer: peer, bytes: m.memoryBytes) } }
            if m.ready {
                let held = Dictionary(m.held.map { (SequenceID($0.sequenceID), Int($0.positions)) }, uniquingKeysWith: min)
                resumePoints.withLock { $0.record(held, peer: peer, epoch: m.planEpoch) }
            }
            if !m.ready { CoordinatorMetrics.fault(.loadFailed) }
            if m.ready, m.loadMs > 0, let pulled = expectedPulls.withLock({ $0.removeValue(forKey: m.workerID) }), pulled >= 4 << 20 {
                // A lower bound of the link's speed (the load time includes building the stage).
                let rate = Double(pulled) / (Double(m.loadMs) / 1000)
                let speed = linkSpeed.withLock { s in
                    s = 0.5 * s + 0.5 * rate
                    return s
                }
                logger.info("pull measured", metadata: [
                    "worker": "\(m.workerID)", "bytes": "\(pulled)", "load_ms": "\(m.loadMs)",
                    "link_mb_per_s": "\(Int(speed / 1e6))",
                ])
            }
            directives = membership.withLock {
                $0.assignmentReady(peer: peer, epoch: m.planEpoch, error: m.ready ? nil : m.error, memoryBytes: m.memoryBytes,
                                   now: t)
            }
        default:
            limited.warning("control socket: ignored an unexpected message kind", key: "\(peer)")
        }
        await execute(directives)
    }

    private func execute(_ directives: [Membership.Directive]) async {
        var queue = directives
        while !queue.isEmpty {
            let d = queue.removeFirst()
            switch d {
            case let .acknowledge(peer, accepted, reason):
                var ack = Caravan_V1_RegisterAck()
                ack.modelSourceAddress = configuration.modelSourceAddress
                ack.accepted = accepted
                ack.reason = reason
                ack.heartbeatIntervalMs = UInt32(clamping: JobDesk.milliseconds(configuration.heartbeatInterval))
                ack.heartbeatTimeoutMs = UInt32(clamping: JobDesk.milliseconds(configuration.heartbeatTimeout))
                ack.planEpoch = membership.withLock { $0.epoch }
                if !accepted { limited.warning("refused a worker", key: "\(peer)", metadata: ["reason": "\(reason)"]) }
                await send(.registerAck(ack), to: peer)
            case .plan(let workers):
                let t = now
                lastPlanAt.withLock { $0 = t }
                let others = membership.withLock { m in
                    m.members.filter { o in !o.draining && !workers.contains { $0.peer == o.peer } }
                }
                for o in others {
                    logger.notice("the plan leaves out a registered worker", metadata: [
                        "worker": "\(o.workerID)", "silent_ms": "\(t > o.lastSeen ? t - o.lastSeen : 0)",
                        "last_gap_ms_ago": "\(o.lastGapAt.map { t > $0 ? t - $0 : 0 }.map(String.init) ?? "none")",
                        "last_link_gap_ms_ago": "\(o.lastLinkGapAt.map { t > $0 ? t - $0 : 0 }.map(String.init) ?? "none")",
                        "load_failed": "\(o.loadFailed)",
                    ])
                }
                do {
                    let purpose = membership.withLock { $0.pendingPurpose }
                    let input = planInput(workers, purpose: purpose)
                    let plan = try makePlan(input, purpose: purpose)
                    CoordinatorMetrics.planned(purpose)
                    let pulls = Dictionary(plan.stages.map { s in
                        (s.workerID, (input.first { $0.id == s.workerID }?.holdings ?? LayerHoldings())
                            .bytesToPull(s.layers.start, s.layers.end, model: facts))
                    }, uniquingKeysWith: { a, _ in a })
                    expectedPulls.withLock { $0 = pulls }
                    logger.info("plan", metadata: [
                        "purpose": "\(purpose.rawValue)", "pull_bytes": "\(pulls.values.reduce(0, +))",
                        "stages": "\(plan.stages.map { "\($0.workerID)\($0.layers)" }.joined(separator: " "))",
                    ])
                    let next = membership.withLock { $0.planned(plan, template: template, now: t) }
                    desk.recordEpoch(membership.withLock { $0.epoch })
                    queue += next
                } catch {
                    CoordinatorMetrics.planFailures.increment()
                    queue += membership.withLock { $0.planFailed(error.description, now: t) }
                }
            case let .assign(peer, assignment):
                var a = assignment
                a.continuing = continuingSequences(epoch: assignment.planEpoch)
                await send(.stageAssignment(a.wire), to: peer)
            case let .serve(epoch, stages, peers):
                let members = membership.withLock { $0.members }
                var order = ServeOrder(epoch: epoch, stages: zip(stages, peers).map { stage, peer in
                    let member = members.first { $0.peer == peer }
                    return ServeOrder.Stage(workerID: member?.workerID ?? "\(peer)", layers: stage.layers,
                                            address: member?.dataAddress ?? "", publicKey: member?.dataPublicKey ?? "")
                })
                order.continuing = continuingSequences(epoch: epoch)
                order.resume = resumePoints.withLock { $0.resume(order.continuing, epoch: epoch, peers: peers) }
                if !order.resume.isEmpty {
                    logger.info("sequences resume where every stage holds them", metadata: [
                        "epoch": "\(epoch)", "sequences": "\(order.resume.count)",
                        "held_positions": "\(order.resume.values.reduce(0, +))",
                        "committed_positions": "\(order.continuing.values.reduce(0, +))",
                    ])
                }
                serve.yield(order)
                await placeStandby(epoch: epoch, stages: stages, peers: peers)
            case .replan(let reason):
                logger.warning("re-planning: \(reason)")
                await desk.stopServing(reason)
            case .fail(let reason):
                logger.error("no plan possible now; jobs wait", metadata: ["reason": "\(reason)"])
                desk.setWaiting(reason)
            case let .release(peer, workerID):
                logger.info("drained worker released", metadata: ["worker": "\(workerID)"])
                var m = Caravan_V1_Drain()
                m.reason = "drained by the operator; its layers moved to other workers"
                m.exit = true
                await send(.drain(m), to: peer)
            }
        }
    }

    /// Places standby copies for the plan of `epoch`, which just started serving (``Planner/standby(for:workers:budgets:model:contextTokens:batchSequences:overheadBytes:)``),
    /// and tells each of its workers that keeps a standby budget which ranges to hold (none: an
    /// empty list). Workers reporting no budget (older ones too) are sent nothing.
    private func placeStandby(epoch: UInt64, stages: [StageAssignment], peers: [PeerID]) async {
        let members = membership.withLock { $0.members }
        let inPlan = peers.compactMap { p in members.first { $0.peer == p } }
        guard inPlan.count == peers.count, inPlan.count == stages.count else { return }
        let plan = PipelinePlan(stages: zip(stages, inPlan).map { stage, member in
            PlannedStage(workerID: member.workerID, layers: stage.layers, memoryBytes: 0)
        })
        let budgets = Dictionary(inPlan.map { ($0.workerID, $0.standbyBudgetBytes) }, uniquingKeysWith: { a, _ in a })
        let placement = Planner.standby(for: plan, workers: planInput(inPlan), budgets: budgets, model: facts,
                                        contextTokens: template.maxContextTokens, batchSequences: template.maxBatchSequences)
        membership.withLock { $0.placedStandby(placement.copies, epoch: epoch) }
        guard inPlan.contains(where: { $0.standbyBudgetBytes > 0 }) else { return }
        logger.info("standby copies placed", metadata: [
            "epoch": "\(epoch)",
            "copies": "\(inPlan.compactMap { m in placement.copies[m.workerID].map { c in "\(m.workerID)" + c.ranges.map(\.description).joined() } }.joined(separator: " "))",
            "bytes": "\(placement.copies.values.reduce(0) { $0 + $1.bytes })",
            "uncovered": "\(placement.uncovered.joined(separator: " "))",
        ])
        let mirrors = Self.mirrors(placement, stages: stages.map(\.layers),
                                   workers: inPlan.map { ($0.workerID, $0.dataAddress, $0.dataPublicKey) })
        placedMirrors.withLock { $0 = (epoch, mirrors) }
        // Holders first: their mirrors exist before the owners' first rows arrive.
        for (peer, member) in zip(peers, inPlan) where member.standbyBudgetBytes > 0 && mirrors[member.workerID] == nil {
            await sendStandby(epoch: epoch, ranges: placement.copies[member.workerID]?.ranges ?? [], to: peer)
        }
        for (peer, member) in zip(peers, inPlan) where mirrors[member.workerID] != nil {
            await sendStandby(epoch: epoch, ranges: placement.copies[member.workerID]?.ranges ?? [],
                              mirrors: mirrors[member.workerID] ?? [], to: peer)
        }
    }

    /// Per owner (worker id), where it streams the KV rows of its layers: to each worker keeping
    /// a standby copy of some of them (``StandbyAssignment/mirrors``). `stages` and `workers`
    /// (id, data address, data key) are the plan's, in order.
    static func mirrors(_ placement: StandbyPlacement, stages: [LayerRange],
                        workers: [(id: String, address: String, key: String)]) -> [String: [KVMirrorTarget]] {
        var mirrors: [String: [KVMirrorTarget]] = [:]
        for (stage, owner) in zip(stages, workers) {
            for holder in workers where holder.id != owner.id {
                for r in placement.copies[holder.id]?.ranges ?? [] {
                    guard let layers = LayerRange(max(r.start, stage.start), min(r.end, stage.end)) else { continue }
                    mirrors[owner.id, default: []].append(KVMirrorTarget(
                        layers: layers, holderAddress: holder.address, holderPublicKey: holder.key, holderID: holder.id))
                }
            }
        }
        return mirrors
    }

    /// Tells `peer` to keep standby copies of `ranges` for the plan of `epoch` (none: an empty
    /// list), and where to mirror the KV rows of its own layers.
    private func sendStandby(epoch: UInt64, ranges: [LayerRange], mirrors: [KVMirrorTarget] = [], to peer: PeerID) async {
        var assignment = StandbyAssignment(planEpoch: epoch, modelName: template.modelName, modelSHA256: template.modelSHA256,
                                           modelSize: template.modelSize, modelLayerCount: template.modelLayerCount, ranges: ranges)
        assignment.mirrors = mirrors
        await send(.standbyAssignment(assignment.wire), to: peer)
    }

    /// Sends `peer` its standby assignment again when it registers again while its plan serves
    /// (it kept its stage, but a message on the connection it lost may be gone; a worker given
    /// the same assignment again changes nothing).
    private func resendStandby(to peer: PeerID) async {
        let found = membership.withLock { ms -> (UInt64, String, [LayerRange])? in
            guard let m = ms.members.first(where: { $0.peer == peer }), m.readyEpoch == ms.epoch else { return nil }
            return (ms.epoch, m.workerID, m.standbyBudgetBytes > 0 ? m.standby?.ranges ?? [] : [])
        }
        guard let (epoch, workerID, ranges) = found else { return }
        let mirrors = placedMirrors.withLock { $0.epoch == epoch ? $0.byWorker[workerID] ?? [] : [] }
        guard !ranges.isEmpty || !mirrors.isEmpty else { return }
        await sendStandby(epoch: epoch, ranges: ranges, mirrors: mirrors, to: peer)
    }

    /// The sequences that continue under the plan of `epoch` with their committed positions
    /// (taken from the job desk at the epoch's first assignment; the jobs' steps on the old
    /// pipeline have been failed by then, so none advances past the count afterwards).
    private func continuingSequences(epoch: UInt64) -> [SequenceID: Int] {
        if let known = continuing.withLock({ $0.epoch == epoch ? $0.sequences : nil }) { return known }
        let sequences = desk.continuingSequences(limit: StageAssignment.maxContinuing)
        return continuing.withLock { c in
            if c.epoch != epoch { c = (epoch, sequences) }
            if !sequences.isEmpty {
                logger.info("sequences continue under the new plan", metadata: [
                    "epoch": "\(epoch)", "sequences": "\(c.sequences.count)",
                    "committed_positions": "\(c.sequences.values.reduce(0, +))",
                ])
            }
            return c.sequences
        }
    }

    /// The plan for `purpose` (see ``PlanPurpose/movement(linkBytesPerSecond:horizonSeconds:)``):
    /// recovery moves the fewest bytes (survivors keep what they hold), a join or a rebalance
    /// weighs movement against the gain over the horizon, the first plan is proportional.
    private func makePlan(_ input: [PlanWorker], purpose: PlanPurpose) throws(PlanError) -> PipelinePlan {
        let horizon = slowWatch.withLock { $0.horizonSeconds }
        guard let movement = purpose.movement(linkBytesPerSecond: linkSpeed.withLock { $0 }, horizonSeconds: horizon) else {
            return try Planner.plan(model: facts, workers: input, contextTokens: template.maxContextTokens,
                                    batchSequences: template.maxBatchSequences)
        }
        return try Planner.plan(model: facts, workers: input, contextTokens: template.maxContextTokens,
                                batchSequences: template.maxBatchSequences, movement: movement)
    }

    private func rebalanceMovement(_ link: Double) -> MovementCost {
        MovementCost(linkBytesPerSecond: link, paybackSeconds: slowWatch.withLock { $0.horizonSeconds })
    }

    /// Planner input: measured speeds where the running plan has them (see ``Rebalancer``). A
    /// re-plan for balance has ended the serving phase already: it reads the speeds against the
    /// plan it replaces.
    private func planInput(_ workers: [Member], purpose: PlanPurpose? = nil) -> [PlanWorker] {
        var layers = currentLayers()
        if layers.isEmpty, purpose == .rebalance { layers = layersBeforeRebalance.withLock { $0 } }
        return Rebalancer.planInput(workers, layersInPlan: layers, minimumSteps: configuration.rebalance.minimumSteps)
    }

    /// Each serving stage's work in layers (the last stage's output matrix counted as the planner
    /// counts it).
    private func currentLayers() -> [String: Double] {
        let stages = membership.withLock { m -> [(workerID: String, layers: Int)] in
            guard case let .serving(_, stages, peers) = m.phase else { return [] }
            // A stage whose worker is gone keeps its place (so the last stage stays last), unnamed.
            return zip(stages, peers).map { stage, peer in
                (workerID: m.members.first { $0.peer == peer }?.workerID ?? "", layers: stage.layers.count)
            }
        }
        var work = Rebalancer.stageWork(stages, model: facts)
        work[""] = nil
        return work
    }

    /// Whether the plan of `epoch` is the one serving now.
    func isServing(epoch: UInt64) -> Bool {
        membership.withLock { m in
            if case .serving(let e, _, _) = m.phase { return e == epoch }
            return false
        }
    }

    /// A step of `epoch` failed while it still serves: re-plan (the jobs replay on the new plan).
    func pipelineFault(epoch: UInt64, reason: String) async {
        CoordinatorMetrics.fault(.stepFailed)
        let directives = membership.withLock { m -> [Membership.Directive] in
            guard m.epoch == epoch else { return [] }
            return m.replan("a step of epoch \(epoch) failed: \(reason)", now: now)
        }
        await execute(directives)
    }

    /// Re-plans for every fault the job desk reports (``JobDesk/pipelineFaults``), until cancelled.
    func followPipelineFaults() async {
        for await fault in desk.pipelineFaults { await pipelineFault(epoch: fault.epoch, reason: fault.reason) }
    }

    /// Drains `workerID` (operator request): refused when the others cannot hold the model.
    func drain(_ workerID: String) async -> (ok: Bool, message: String) {
        let others = membership.withLock { m in
            m.members.filter { $0.workerID != workerID && !$0.draining && !$0.loadFailed }
        }
        guard membership.withLock({ $0.members.contains { $0.workerID == workerID } }) else {
            return (false, "no worker \(workerID) is registered")
        }
        if !others.isEmpty {
            do {
                _ = try Planner.plan(model: facts, workers: planInput(others), contextTokens: template.maxContextTokens,
                                     batchSequences: template.maxBatchSequences)
            } catch {
                return (false, "cannot drain \(workerID): the other workers cannot take its layers: \(error)")
            }
        }
        let t = now
        let result = membership.withLock { m -> Result<[Membership.Directive], Membership.DrainRefusal> in
            do throws(Membership.DrainRefusal) { return .success(try m.drain(workerID, now: t)) } catch { return .failure(error) }
        }
        switch result {
        case .success(let directives):
            logger.info("draining", metadata: ["worker": "\(workerID)"])
            await execute(directives)
            return (true, "draining \(workerID): its layers move to the other workers, then it exits")
        case .failure(let refusal):
            return (false, refusal.description)
        }
    }

    /// Re-plans when a stage of the serving plan has become slow: the plan with measured speeds
    /// would cut the bottleneck step time below `slowFactor` of today's, and the last plan is
    /// older than the rebalancing interval (hysteresis, so plans do not flap).
    func checkBalance() async {
        let policy = configuration.rebalance
        guard policy.enabled else { return }
        let t = now
        let snapshot = membership.withLock { m -> (epoch: UInt64, members: [Member], layers: [(String, Int)])? in
            guard case let .serving(epoch, stages, peers) = m.phase else { return nil }
            let ids = peers.map { p in m.members.first { $0.peer == p }?.workerID ?? "" }
            return (epoch, m.members, zip(ids, stages).map { ($0, $1.layers.count) })
        }
        guard let snapshot else { return }
        let stages = snapshot.layers.compactMap { id, layers in
            snapshot.members.first { $0.workerID == id }.map { (member: $0, layers: layers) }
        }
        guard stages.count == snapshot.layers.count else { return }
        let candidate = Rebalancer.evaluate(
            stages: stages, candidates: snapshot.members.filter { !$0.draining && !$0.loadFailed }, model: facts,
            contextTokens: template.maxContextTokens, batchSequences: template.maxBatchSequences,
            slowFactor: policy.slowFactor, minimumSteps: policy.minimumSteps,
            movement: rebalanceMovement(linkSpeed.withLock { $0 }))
        // The watch sees every check (a transient must last the sustained window); a re-plan
        // waits for the interval after the last plan as well.
        guard let decision = slowWatch.withLock({ $0.observe(candidate, epoch: snapshot.epoch, now: t) }) else { return }
        guard t - lastPlanAt.withLock({ $0 }) >= UInt64(JobDesk.milliseconds(policy.minimumInterval)) else { return }
        let reason = decision.reason
        let layers = currentLayers()
        layersBeforeRebalance.withLock { $0 = layers }
        let directives = membership.withLock { $0.replan(reason, now: t, purpose: .rebalance) }
        await execute(directives)
    }

    /// Asks every stage of `epoch` to drop `sequences`.
    func release(_ sequences: [UInt64], epoch: UInt64) async {
        guard case let .serving(current, _, peers) = membership.withLock({ $0.phase }), current == epoch else { return }
        let release = Caravan_V1_ReleaseSequences(epoch: epoch, sequences: sequences)
        for peer in peers { await send(.releaseSequences(release), to: peer) }
    }

    /// Declares silent workers lost, heartbeats workers, fails jobs that waited too long and
    /// checks the balance of the plan, until cancelled.
    func tickLoop() async {
        var beat: UInt64 = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.heartbeatInterval)
            if Task.isCancelled { break }
            await expire()
            await dropRevokedWorkers(now: now)
            beat += 1
            let (peers, epoch) = membership.withLock { ($0.members.map(\.peer), $0.epoch) }
            var h = Caravan_V1_Heartbeat()
            h.senderID = "coordinator"
            h.sequence = beat
            h.planEpoch = epoch
            h.sentUnixMs = UInt64(Date().timeIntervalSince1970 * 1000)
            for peer in peers { await send(.heartbeat(h), to: peer) }
            await desk.sweep()
            await checkBalance()
        }
    }

    /// Declares lost the workers silent past the heartbeat timeout and those whose connection
    /// closed longer than the grace ago (``Membership/expire(now:)``), and re-plans when one was
    /// in the plan.
    func expire() async {
        let t = now
        let expiry = membership.withLock { $0.expire(now: t) }
        for loss in expiry.losses {
            switch loss.cause {
            case .heartbeatTimeout:
                CoordinatorMetrics.fault(.workerLost)
                logger.warning("\(loss.member.workerID) lost: no heartbeat for \(loss.silentMs) ms", metadata: [
                    "worker": "\(loss.member.workerID)", "reason": "\(loss.reason)",
                ])
            case .connectionClosed:
                CoordinatorMetrics.fault(.connectionClosed)
                logger.warning("\(loss.member.workerID)'s connection closed; lost after \(loss.closedMs ?? 0)ms", metadata: [
                    "worker": "\(loss.member.workerID)", "silent_ms": "\(loss.silentMs)",
                    "reason": "its end closed the connection (the process ended) and it did not connect again",
                ])
            }
        }
        await execute(expiry.directives)
    }

    /// Follows the control link's connection events until the link closes. A worker whose
    /// connection its own end closed (its process exited or was killed) is lost once it has not
    /// connected again within ``CoordinatorConfiguration/effectiveConnectionGrace`` (a worker that
    /// only re-makes its connection is back within it), without waiting for the heartbeat
    /// timeout. A connection dropped after silence (a frozen worker, a cut link) changes nothing:
    /// the heartbeat timeout decides.
    func watchConnections() async {
        guard let grace = configuration.effectiveConnectionGrace else { return }
        await withDiscardingTaskGroup { group in
            for await event in control.connectionEvents() {
                let t = now
                switch event {
                case .opened(let bytes):
                    if let back = membership.withLock({ $0.connectionOpened(peer: PeerID(bytes), now: t) }) {
                        limited.info("worker connected again", key: back.workerID,
                                     metadata: ["worker": "\(back.workerID)", "closed_ms": "\(back.closedMs)"])
                    }
                case .closed(let bytes, .peerEnded):
                    guard let workerID = membership.withLock({ $0.connectionClosed(peer: PeerID(bytes), now: t) }) else { continue }
                    limited.notice("worker's connection closed by its end", key: workerID, metadata: [
                        "worker": "\(workerID)", "grace_ms": "\(JobDesk.milliseconds(grace))",
                    ])
                    group.addTask {
                        try? await Task.sleep(for: grace)
                        if !Task.isCancelled { await self.expire() }
                    }
                case .closed(let bytes, .silence):
                    let member = membership.withLock { m in m.members.first { $0.peer == PeerID(bytes) } }
                    if let member {
                        limited.notice("worker's connection dropped after silence; the heartbeat timeout decides", key: member.workerID, metadata: [
                            "worker": "\(member.workerID)", "silent_ms": "\(t > member.lastSeen ? t - member.lastSeen : 0)",
                        ])
                    }
                }
            }
        }
    }

    /// Re-reads changed allow-lists and drops the workers whose key is no longer a worker's: their
    /// open connections stay up, but they are lost to the plan (their messages are refused).
    private func dropRevokedWorkers(now t: UInt64) async {
        guard let access = configuration.access else { return }
        access.refresh()
        if let error = access.takeReloadError() {
            logger.error("cannot re-read an allow-list; keeping the previous lists", metadata: ["reason": "\(error)"])
        }
        let (directives, removed) = membership.withLock { m in
            m.revoke(where: { !access.roles(of: $0.dataPublicKey).contains(.worker) }, now: t)
        }
        guard !removed.isEmpty else { return }
        for member in removed {
            logger.warning("worker removed: its key is no longer in the worker allow-list", metadata: [
                "worker": "\(member.workerID)", "key": "\(member.dataPublicKey)"])
        }
        CoordinatorMetrics.fault(.workerLost, count: removed.count)
        await execute(directives)
    }

    private func send(_ body: Caravan_V1_Envelope.OneOf_Body, to peer: PeerID) async {
        do {
            try await control.send(try codec.encode(body), to: peer.bytes, timeout: .seconds(2))
        } catch {
            limited.warning("could not send a control message", metadata: ["reason": "\(error)"])
        }
    }
}
