import CaravanWire
import ClusterSupport
import Foundation
import Logging
import ZeroMQ

/// The coordinator's control socket (ROUTER): feeds workers' messages into the ``Membership``
/// state machine and carries out its directives (acknowledgements, planning, assignments,
/// serving, failure). Also sends `ReleaseSequences` to every stage.
final class ControlPlane: Sendable {
    private let control: AsyncSocket
    private let codec: WireCodec
    private let membership: LockedValue<Membership>
    private let facts: ModelFacts
    private let template: AssignmentTemplate
    private let configuration: CoordinatorConfiguration
    private let logger: Logger
    private let desk: JobDesk
    private let serve: AsyncStream<ServeOrder>.Continuation
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    init(control: AsyncSocket, codec: WireCodec, membership: LockedValue<Membership>, facts: ModelFacts,
         template: AssignmentTemplate, configuration: CoordinatorConfiguration, logger: Logger, desk: JobDesk,
         serve: AsyncStream<ServeOrder>.Continuation) {
        self.control = control
        self.codec = codec
        self.membership = membership
        self.facts = facts
        self.template = template
        self.configuration = configuration
        self.logger = logger
        self.desk = desk
        self.serve = serve
        self.origin = clock.now
    }

    private var now: UInt64 { UInt64(max(0, JobDesk.milliseconds(clock.now - origin))) }
    /// The clock ``Membership`` is fed with (milliseconds since start), for status reports.
    var elapsedMs: UInt64 { now }

    /// Handles one message from the control socket (routing id first).
    func handle(_ frames: [Message]) async {
        guard frames.count >= 2 else { return }
        let peer = PeerID(frames[0].bytes)
        let body: Caravan_V1_Envelope.OneOf_Body
        do {
            guard case .message(let b, _) = try codec.decode(Array(frames.dropFirst())) else {
                logger.warning("control socket: dropped a data message")
                return
            }
            body = b
        } catch {
            logger.warning("control socket: dropped a bad frame", metadata: ["reason": "\(error)"])
            return
        }
        let t = now
        var directives: [Membership.Directive] = []
        switch body {
        case .hello(let m):
            membership.withLock { $0.touch(peer, now: t) }
            logger.info("hello", metadata: ["node": "\(m.nodeID)", "role": "\(m.role)"])
            var hello = Caravan_V1_Hello()
            hello.protocolVersion = WireProtocol.version
            hello.role = .coordinator
            hello.nodeID = "coordinator"
            hello.softwareVersion = "caravan-coordinator 0.1"
            await send(.hello(hello), to: peer)
        case .register(let m):
            logger.info("register", metadata: [
                "worker": "\(m.workerID)", "data": "\(m.dataAddress)", "memory": "\(m.capabilities.freeMemoryBytes)",
                "speed": "\(m.capabilities.measuredGflops)",
            ])
            directives = membership.withLock {
                $0.register(peer: peer, workerID: m.workerID, dataAddress: m.dataAddress, dataPublicKey: m.dataPublicKey,
                            memoryBytes: m.capabilities.freeMemoryBytes, speed: m.capabilities.measuredGflops,
                            heldModels: m.capabilities.models.map(\.model.sha256), now: t)
            }
        case .heartbeat(let m):
            membership.withLock {
                $0.heartbeat(peer: peer, stepsRun: m.stepsRun, recentStepMs: m.recentStepMs,
                             recentRowsPerStep: m.recentRowsPerStep, freeMemoryBytes: m.freeMemoryBytes, now: t)
            }
        case .assignmentReady(let m):
            logger.info("assignment ready", metadata: [
                "worker": "\(m.workerID)", "epoch": "\(m.planEpoch)", "ready": "\(m.ready)", "error": "\(m.error)",
                "load_ms": "\(m.loadMs)",
            ])
            if m.ready { membership.withLock { $0.stageMemory(peer: peer, bytes: m.memoryBytes) } }
            directives = membership.withLock {
                $0.assignmentReady(peer: peer, epoch: m.planEpoch, error: m.ready ? nil : m.error, now: t)
            }
        default:
            logger.warning("control socket: ignored an unexpected message kind")
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
                if !accepted { logger.warning("refused a worker", metadata: ["reason": "\(reason)"]) }
                await send(.registerAck(ack), to: peer)
            case .plan(let workers):
                let input = workers.map { PlanWorker(id: $0.workerID, memoryBytes: $0.memoryBytes, speed: $0.speed) }
                do {
                    let plan = try Planner.plan(model: facts, workers: input, contextTokens: template.maxContextTokens,
                                                batchSequences: template.maxBatchSequences)
                    logger.info("plan", metadata: ["stages": "\(plan.stages.map { "\($0.workerID)\($0.layers)" }.joined(separator: " "))"])
                    queue += membership.withLock { $0.planned(plan, template: template) }
                } catch {
                    queue += membership.withLock { $0.planFailed(error.description) }
                }
            case let .assign(peer, assignment):
                await send(.stageAssignment(assignment.wire), to: peer)
            case let .serve(epoch, stages, peers):
                let members = membership.withLock { $0.members }
                let order = ServeOrder(epoch: epoch, stages: zip(stages, peers).map { stage, peer in
                    let member = members.first { $0.peer == peer }
                    return ServeOrder.Stage(workerID: member?.workerID ?? "\(peer)", layers: stage.layers,
                                            address: member?.dataAddress ?? "", publicKey: member?.dataPublicKey ?? "")
                })
                serve.yield(order)
            case .replan(let reason):
                logger.warning("re-planning: \(reason)")
                await desk.stopServing(reason)
            case .fail(let reason):
                logger.critical("the cluster cannot serve: \(reason)")
                desk.setUnavailable(reason)
            }
        }
    }

    /// Asks every stage of `epoch` to drop `sequences`.
    func release(_ sequences: [UInt64], epoch: UInt64) async {
        guard case let .serving(current, _, peers) = membership.withLock({ $0.phase }), current == epoch else { return }
        var m = Caravan_V1_ReleaseSequences()
        m.planEpoch = epoch
        m.sequenceIds = sequences
        for peer in peers { await send(.releaseSequences(m), to: peer) }
    }

    /// Declares silent workers lost, and heartbeats workers, until cancelled.
    func tickLoop() async {
        var beat: UInt64 = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.heartbeatInterval)
            if Task.isCancelled { break }
            let t = now
            let directives = membership.withLock { $0.tick(now: t) }
            await execute(directives)
            beat += 1
            let peers = membership.withLock { $0.members.map(\.peer) }
            var h = Caravan_V1_Heartbeat()
            h.senderID = "coordinator"
            h.sequence = beat
            h.sentUnixMs = UInt64(Date().timeIntervalSince1970 * 1000)
            for peer in peers { await send(.heartbeat(h), to: peer) }
        }
    }

    private func send(_ body: Caravan_V1_Envelope.OneOf_Body, to peer: PeerID) async {
        do {
            try await control.send([Message(peer.bytes)] + (try codec.encode(body)), timeout: .seconds(5))
        } catch {
            logger.warning("could not send a control message", metadata: ["reason": "\(error)"])
        }
    }
}
