import CaravanCore
import CaravanTransport
import CaravanWire
import ChatTemplate
import Fingerprint
import Foundation
import GGUF
import Inference
import Logging
import Planning
import ServiceLifecycle
import Tokenizer
import ZeroMQ

/// Why the coordinator cannot start.
public struct CoordinatorStartError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public let description: String
}

/// The coordinator daemon: waits for its workers (control ROUTER), plans the model's layers over
/// them, assigns stages, and once every stage is ready serves jobs from clients (client ROUTER)
/// through a ``RemotePipelineEngine`` with one ``Lane`` per stage. Results of the last stage come
/// back on the result ROUTER.
///
/// One `Service`: graceful shutdown stops taking work, fails steps in flight and closes sockets.
public final class CoordinatorService: Service {
    /// The configuration.
    public let configuration: CoordinatorConfiguration
    private let logger: Logger
    /// Lines a peer can cause, within a budget (``LogLimiter``).
    private let limited: LogLimiter
    /// Step times across the pipelines of this coordinator (for step deadlines).
    private let stepTiming: LockedValue<StepDeadline>
    private let replays = LockedValue(ReplayTotals())
    /// Work redone by replays after re-plans so far (for logs and tests).
    public var replayTotals: ReplayTotals { replays.withLock { $0 } }

    /// A coordinator with `configuration`, logging to `logger`.
    public init(configuration: CoordinatorConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.limited = LogLimiter(logger: logger)
        self.stepTiming = LockedValue(StepDeadline(maximum: RemotePipelineEngine.seconds(configuration.stepDeadline)))
    }

    /// Runs the daemon: binds the control, result and client sockets (ROUTERs) and the model
    /// source, with CURVE and the ZAP handler as configured, and serves over them (``run(over:)``).
    public func run() async throws {
        let config = configuration
        let model = try openModel()
        let (file, facts, fingerprint) = (model.file, model.facts, model.fingerprint)
        // Two I/O threads: layer pulls (several connections) are encrypted on two cores.
        let context = try Context(ioThreads: 2)
        // With CURVE a ZAP handler decides who connects to which socket (it must run before the
        // sockets bind): each socket has a ZAP domain admitting only the roles that use it, and
        // every admitted connection's frames carry the client key as User-Id for the per-message
        // checks (AccessList, docs/protocol.md).
        var zap: ZAPAuthenticator?
        let access: AccessList?
        if case .curve = config.security {
            if let problem = AccessList.startupProblem(config.access) {
                throw CoordinatorStartError(description: problem)
            }
            access = config.access
        } else {
            access = nil
        }
        if let access {
            let logger = self.logger
            let limited = LogLimiter(logger: logger)
            zap = try ZAPAuthenticator(context: context, allowNull: false, resolver: { domain, key in
                access.resolve(domain: domain, key: key) { error in
                    logger.error("cannot read an allow-list again; keeping the previous one", metadata: ["reason": "\(error)"])
                }
            }) { decision in
                if !decision.allowed {
                    // A refused libzmq client retries its handshake every reconnect interval.
                    limited.warning("refused a connection", key: "\(decision.address) \(decision.clientKey ?? "")", metadata: [
                        "address": "\(decision.address)", "socket": "\(decision.domain)", "key": "\(decision.clientKey ?? "")",
                        "reason": "\(decision.reason)",
                    ])
                }
            }
        }
        let roles = access != nil
        let loop = try EventLoop(context: context, name: "coordinator-zmq")
        defer {
            loop.shutdown()
            zap?.stop()
            context.terminate()
        }
        // Every socket refuses frames above its largest legitimate one while reading them
        // (`FrameLimits`, docs/protocol.md): a peer cannot make the coordinator buffer more.
        // Its connections are watched: a worker whose process ends is noticed by its connection
        // closing, without waiting for the heartbeat timeout.
        let control = try ZeroMQTransport.watchedRouter(loop: loop, liveness: LinkLiveness.cluster) { socket in
            try socket.apply(config.security.server)
            if roles { try socket.set(.zapDomain, CoordinatorSocketDomain.control.rawValue) }
            try socket.set(.maxMessageSize, Int64(FrameLimits.control(config.limits)))
            // Workers keep one routing identity per process: a re-made connection takes it over.
            try socket.set(.routerHandover, 1)
            try socket.bind(config.controlEndpoint)
        }
        let results = try AsyncSocket(loop: loop, type: .router) { socket in
            try socket.apply(config.security.server)
            if roles { try socket.set(.zapDomain, CoordinatorSocketDomain.results.rawValue) }
            try socket.set(.receiveHighWaterMark, 256)
            try socket.set(.maxMessageSize, Int64(FrameLimits.results(config.limits, maxRows: config.maxBatchRows,
                                                                       vocabulary: facts.vocabularySize)))
            try socket.apply(LinkLiveness.cluster, as: .bound)
            try socket.bind(config.resultsEndpoint ?? Endpoints.anyPort(like: config.controlEndpoint))
        }
        let clients = try AsyncSocket(loop: loop, type: .router) { socket in
            try socket.apply(config.security.server)
            if roles { try socket.set(.zapDomain, CoordinatorSocketDomain.clients.rawValue) }
            try socket.set(.maxMessageSize, Int64(FrameLimits.clients(config.limits)))
            // Replies handed to the socket just before a drained coordinator closes it (a job's
            // `finished`) still reach their clients: closing waits for them, at most 2 s.
            try socket.set(.linger, 2000)
            try socket.bind(config.clientsEndpoint)
        }
        let resultAddress = Endpoints.advertisable(try await results.withSocket { s throws(ZMQError) in try s.lastEndpoint })
        let controlAddress = try await control.socket.withSocket { s throws(ZMQError) in try s.lastEndpoint }
        let clientsAddress = try await clients.withSocket { s throws(ZMQError) in try s.lastEndpoint }
        let security = config.security
        let logger = self.logger
        try await run(over: CoordinatorLinks(
            control: control, results: ZeroMQTransport(results, routed: true),
            clients: ZeroMQTransport(clients, routed: true),
            dialer: ZeroMQDialer(loop: loop, security: { security.client(serverKey: $0) }),
            controlAddress: controlAddress, clientsAddress: clientsAddress, resultAddress: resultAddress,
            access: access,
            modelSource: { isRegisteredWorker in
                try await ModelServer(
                    loop: loop, endpoint: config.modelSourceEndpoint ?? Endpoints.anyPort(like: config.controlEndpoint),
                    security: config.security, file: file, fingerprint: fingerprint, layerCount: facts.layerCount,
                    codec: WireCodec(limits: config.limits), logger: logger, access: access, isRegisteredWorker: isRegisteredWorker)
            }), model: model)
    }

    /// Serves over `links` until cancelled or shut down gracefully: takes workers' registrations,
    /// plans, assigns, and serves jobs once every stage is ready. Closes the links when done.
    public func run(over links: CoordinatorLinks) async throws {
        try await run(over: links, model: try openModel())
    }

    /// The model file, what the planner needs of it, and its fingerprint (read once per start).
    private struct OpenedModel: Sendable {
        let file: GGUFFile
        let facts: ModelFacts
        let fingerprint: ModelFingerprint
    }

    private func openModel() throws -> OpenedModel {
        let path = configuration.modelPath
        do {
            let file = try GGUFFile(path: path)
            return OpenedModel(file: file, facts: try ModelFacts(file: file), fingerprint: try ModelFingerprint.of(path: path))
        } catch {
            throw CoordinatorStartError(description: "cannot open the model \(path): \(error)")
        }
    }

    private func run(over links: CoordinatorLinks, model: OpenedModel) async throws {
        let config = configuration
        let (file, facts, fingerprint) = (model.file, model.facts, model.fingerprint)
        let tokenizer: Tokenizer
        do {
            tokenizer = try Tokenizer(gguf: file)
        } catch {
            throw CoordinatorStartError(description: "cannot open the model \(config.modelPath): \(error)")
        }
        let template = tokenizer.chatTemplate.flatMap { try? ChatTemplate($0) }
        let contextLimit = min(config.contextTokens, facts.contextLength > 0 ? facts.contextLength : config.contextTokens)
        let access = links.access
        let codec = WireCodec(limits: config.limits)
        let (control, results, clients) = (links.control, links.results, links.clients)
        let (resultAddress, controlAddress, clientsAddress) = (links.resultAddress, links.controlAddress, links.clientsAddress)
        logger.info("coordinator started", metadata: [
            "model": "\(fingerprint.name)", "sha256": "\(fingerprint.sha256)", "layers": "\(facts.layerCount)",
            "control": "\(controlAddress)", "clients": "\(clientsAddress)", "results": "\(resultAddress)",
            "workers": "\(config.expectedWorkers)", "security": "\(config.security == .plain ? "plain" : "curve")",
            "activations": "\(config.activationDType == .f32 ? "f32" : "f16")",
            "public_key": "\(config.security.publicKey)",
            "client_access": "\(AccessList.clientAccess(access))",
            "authorized": "\(access.map { "workers \($0.counts.workers), clients \($0.counts.clients), admins \($0.counts.admins)" } ?? "plain mode: every peer has every role")",
        ])
        if access?.openClients == true {
            logger.warning("OPEN CLIENTS: any key that knows the coordinator's public key may submit jobs (--open-clients); give --authorized-clients to close it")
        } else if access == nil {
            logger.warning("PLAIN MODE: no encryption and no roles; every peer may register, submit, drain and read every job (--insecure)")
        }

        let template_ = AssignmentTemplate(
            modelName: fingerprint.name, modelSHA256: fingerprint.sha256, modelSize: fingerprint.size,
            modelLayerCount: facts.layerCount, resultAddress: resultAddress, activationDType: config.activationDType,
            maxContextTokens: contextLimit, maxBatchSequences: config.batchSequences, maxBatchTokens: config.maxBatchRows)
        var assignmentTemplate = template_
        assignmentTemplate.resultPublicKey = config.security.publicKey
        let journal: any JobJournal
        let journalLogger = logger
        do {
            journal = try config.stateDirectory.map {
                try FileJobJournal(directory: $0, name: "jobs-\(fingerprint.sha256.prefix(16)).journal") { error in
                    journalLogger.error("job journal write failed; a restart may not restore this job",
                                        metadata: ["reason": "\(error)"])
                }
            } ?? InMemoryJobJournal()
        } catch {
            throw CoordinatorStartError(description: "\(error)")
        }
        let policy = JobDeskPolicy(queueTimeout: config.queueTimeout, maxUnfinishedJobs: config.maxUnfinishedJobs,
                                   maxJobsPerClient: config.maxJobsPerClient, batchSequences: config.batchSequences)
        let outbox = ClientOutbox(limit: policy.maxOutbox, logger: logger)
        let desk = JobDesk(tokenizer: tokenizer, template: template, contextLimit: contextLimit, logger: logger, journal: journal,
                           policy: policy, outbox: outbox)
        let lastEpoch: UInt64
        do {
            lastEpoch = try desk.restore()
        } catch {
            throw CoordinatorStartError(description: "cannot read the job journal: \(error)")
        }
        let membership = LockedValue(Membership(
            expectedWorkers: config.expectedWorkers, modelSHA256: fingerprint.sha256,
            heartbeatTimeout: UInt64(JobDesk.milliseconds(config.heartbeatTimeout)),
            suspectAfter: UInt64(2 * JobDesk.milliseconds(config.heartbeatInterval)),
            joinSettle: UInt64(JobDesk.milliseconds(config.joinSettle)),
            connectionGrace: config.effectiveConnectionGrace.map { UInt64(max(0, JobDesk.milliseconds($0))) }, lastEpoch: lastEpoch))
        let modelServer = try await links.modelSource? { key in
            membership.withLock { m in m.members.contains { $0.dataPublicKey == key } }
        }
        var planeConfiguration = config
        planeConfiguration.modelSourceAddress = modelServer?.address ?? ""
        planeConfiguration.access = access
        let (servings, serveSignal) = AsyncStream.makeStream(of: ServeOrder.self)
        let plane = ControlPlane(control: control, codec: codec, membership: membership, facts: facts,
                                 template: assignmentTemplate, configuration: planeConfiguration, logger: logger, desk: desk,
                                 serve: serveSignal)
        let status = LiveClusterStatus(
            membership: membership, desk: desk, clock: { plane.elapsedMs }, configuration: config,
            model: LiveClusterStatus.identity(fingerprint, layerCount: facts.layerCount),
            planningBasis: PlanningBasis(facts: facts, modelName: fingerprint.name, contextTokens: contextLimit,
                                         batchSequences: config.batchSequences))
        let endpoint = ClientEndpoint(link: clients, codec: codec, desk: desk, outbox: outbox, access: access,
                                      admin: AdminDesk(source: status, clientAccess: AccessList.clientAccess(access)),
                                      drain: { worker in await plane.drain(worker) }, logger: logger)
        CoordinatorMetrics.declare()

        // Graceful shutdown drains: new jobs are refused, running ones may finish (up to
        // `drainTimeout`), then every loop is cancelled.
        try? await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    try await gracefulShutdown()
                    desk.stopAdmitting("the coordinator is shutting down")
                    let deadline = ContinuousClock.now + config.drainTimeout
                    while desk.activeJobs > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
                    // The jobs' last events are queued, maybe not yet sent: cancelling the outbox
                    // now would lose a `finished` its client waits for.
                    let flushed = await outbox.flush(within: .seconds(5))
                    self.logger.info("drained", metadata: ["unfinished_jobs": "\(desk.activeJobs)", "replies_unsent": "\(flushed ? 0 : outbox.queued)"])
                    throw CancellationError()
                }
                group.addTask {
                    do {
                        for try await message in control.deliveries() { await plane.handle(message) }
                    } catch {
                        self.logger.error("control socket failed", metadata: ["reason": "\(error)"])
                    }
                }
                group.addTask {
                    do {
                        for try await message in results.deliveries() {
                            self.deliver(message, codec: codec, desk: desk, access: access)
                        }
                    } catch {
                        self.logger.error("result socket failed", metadata: ["reason": "\(error)"])
                    }
                }
                group.addTask {
                    do {
                        for try await message in clients.deliveries() { await endpoint.handle(message) }
                    } catch {
                        self.logger.error("client socket failed", metadata: ["reason": "\(error)"])
                    }
                }
                group.addTask { await endpoint.runOutbox() }
                if let modelServer { group.addTask { await modelServer.run() } }
                group.addTask { await plane.tickLoop() }
                group.addTask { await plane.followPipelineFaults() }
                group.addTask { await plane.watchConnections() }
                if config.recordsMetrics {
                    group.addTask {
                        while !Task.isCancelled {
                            CoordinatorMetrics.refresh(status.snapshot())
                            try? await Task.sleep(for: .seconds(1))
                        }
                    }
                }
                group.addTask {
                    // Runs the lanes of the pipeline once it is ready.
                    for await serve in servings {
                        await self.serve(serve, dialer: links.dialer, codec: codec, desk: desk, plane: plane,
                                         vocabulary: facts.vocabularySize, contextLimit: contextLimit,
                                         layerCount: facts.layerCount)
                    }
                }
        }
        serveSignal.finish()
        desk.serving?.engine.failAll(CancellationError())
        outbox.finish()
        logger.info("coordinator stopping")
        await modelServer?.close()
        await clients.close()
        await results.close()
        await control.close()
    }

    private func deliver(_ message: Delivery, codec: WireCodec, desk: JobDesk, access: AccessList?) {
        if access != nil {
            // Only the worker the last stage of the serving plan was assigned to posts results:
            // another worker (or a stale one) could otherwise answer steps it never ran.
            let caller = AccessList.caller(identity: message.identity, access: access)
            guard let serving = desk.serving, caller.roles.contains(.worker), !caller.key.isEmpty,
                  caller.key == serving.lastStageKey else {
                limited.warning("result socket: dropped a result from a worker that does not run the last stage",
                                key: caller.key, metadata: ["key": "\(caller.key)"])
                return
            }
        }
        do {
            guard case .stepResult(let outcome, _) = try codec.decode(message.frames) else {
                limited.warning("result socket: dropped a message that is not a step result", key: message.identity ?? "")
                return
            }
            CoordinatorMetrics.bytesFromLastStage.increment(by: message.frames.reduce(0) { $0 + $1.count })
            guard let engine = desk.serving?.engine, engine.deliver(outcome) else {
                limited.warning("result socket: dropped a result for no pending step", key: message.identity ?? "",
                               metadata: ["step": "\(outcome.stepID)", "epoch": "\(outcome.planEpoch)"])
                return
            }
        } catch {
            limited.warning("result socket: dropped a bad frame", key: message.identity ?? "", metadata: ["reason": "\(error)"])
        }
    }

    private func serve(_ serve: ServeOrder, dialer: any TransportDialer, codec: WireCodec, desk: JobDesk, plane: ControlPlane,
                       vocabulary: Int, contextLimit: Int, layerCount: Int) async {
        let first: any Transport
        do {
            first = try dialer.dial(serve.stages[0].address, serverKey: serve.stages[0].publicKey)
        } catch {
            logger.error("cannot connect to the first stage", metadata: ["reason": "\(error)"])
            await plane.pipelineFault(epoch: serve.epoch, reason: "cannot connect to the first stage: \(error)")
            return
        }
        let engine = RemotePipelineEngine(
            firstStage: first, planEpoch: serve.epoch, vocabularySize: vocabulary, contextLimit: contextLimit,
            codec: codec, deadline: configuration.stepDeadline, timing: stepTiming, label: "epoch-\(serve.epoch)",
            replay: serve.continuing.isEmpty ? nil : ReplayLedger(epoch: serve.epoch, continuing: serve.continuing,
                                                                  resume: serve.resume, layerCount: layerCount,
                                                                  logger: logger, totals: replays),
            releaser: { ids in await plane.release(ids, epoch: serve.epoch) })
        // By default one lane per stage (at least two): each stage works on one lane's rows while
        // the others are elsewhere in the pipeline. Since the last stage samples, a lane's trip
        // back through the coordinator is short, and fewer, fuller lanes batch more rows per step
        // (two pinned workers: 1.36-1.49x one worker with 2 lanes, 1.27-1.36x with 3).
        let laneCount = configuration.lanes ?? max(2, serve.stages.count)
        let lanes = (0..<max(1, laneCount)).map { i in
            Lane(index: i, engine: engine, maxBatchRows: configuration.maxBatchRows,
                 sink: { sequence, event in await desk.laneEvent(sequence, event) })
        }
        logger.info("serving", metadata: [
            "epoch": "\(serve.epoch)", "stages": "\(serve.stages.map { "\($0.workerID)\($0.layers)" }.joined(separator: " "))",
            "lanes": "\(lanes.count)",
        ])
        let pipeline = ServingPipeline(epoch: serve.epoch, engine: engine, lanes: lanes,
                                       lastStageKey: serve.stages.last?.publicKey ?? "", resume: LockedValue(serve.resume))
        guard await desk.startServing(pipeline, stillCurrent: { plane.isServing(epoch: serve.epoch) }) else {
            logger.info("plan replaced before it served", metadata: ["epoch": "\(serve.epoch)"])
            await first.close()
            return
        }
        await withDiscardingTaskGroup { group in
            for lane in lanes { group.addTask { await lane.run() } }
        }
        engine.failAll(CancellationError())
        await first.close()
    }
}

/// A pipeline ready to serve (from the control plane to the lane runner).
struct ServeOrder: Sendable {
    struct Stage: Sendable {
        let workerID: String
        let layers: LayerRange
        let address: String
        let publicKey: String
    }
    let epoch: UInt64
    let stages: [Stage]
    /// The sequences that continue from the previous plan, with their committed positions.
    var continuing: [SequenceID: Int] = [:]
    /// Of those, the ones every stage holds in all its layers up to a position: they resume there
    /// (``ResumePoints``).
    var resume: [SequenceID: Int] = [:]
}
