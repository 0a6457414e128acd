import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Roles on a real CURVE coordinator with every allow-list (one worker; clients alice and bob in
/// `authorized_clients`, an admin key, no `--open-clients`): each socket admits only the roles
/// that use it, and each message is checked against the sender's key (docs/protocol.md, "Roles").
final class RoleTests: XCTestCase {
    static let shared = SharedCluster()
    nonisolated(unsafe) static var alice: CurveKeyPair?
    nonisolated(unsafe) static var bob: CurveKeyPair?

    override class func setUp() {
        super.setUp()
        shared.start { c in
            let keys = try c.startWithClientList(workers: 1, clients: ["alice", "bob"])
            (alice, bob) = (keys[0], keys[1])
        }
    }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    private func running() throws -> (ClusterProcesses, Context) { try Self.shared.running() }

    private func client(_ keys: CurveKeyPair) throws -> JobClient {
        let (cluster, context) = try running()
        return try JobClient(context: context, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey, keys: keys)
    }

    /// Sends `frames` with `keys` to `endpoint` and returns the first reply within `wait`, or nil.
    private static func exchange(_ endpoint: String, keys: CurveKeyPair, _ frames: [Message], wait: Duration = .seconds(2)) async throws -> [Message]? {
        let (cluster, context) = try shared.running()
        let loop = try EventLoop(context: context, name: "role-test")
        defer { loop.shutdown() }
        let socket = try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.apply(.curveClient(keys: keys, serverPublicKey: cluster.coordinatorKey))
            try socket.connect(endpoint)
        }
        try await socket.send(frames, timeout: .seconds(2))
        let reply = try? await socket.receive(timeout: wait)
        await socket.close()
        return reply
    }

    private func refusals(_ cluster: ClusterProcesses, socket: String, key: String) -> Int {
        cluster.log("coordinator.log").split(separator: "\n").filter {
            $0.contains("refused a connection") && $0.contains("socket=\(socket)") && $0.contains(key)
        }.count
    }

    private static func register(_ id: String, key: String) -> Caravan_V1_Envelope.OneOf_Body {
        var r = Caravan_V1_Register()
        r.workerID = id
        r.dataAddress = "tcp://127.0.0.1:1"
        r.dataPublicKey = key
        r.capabilities.cores = 1
        r.capabilities.freeMemoryBytes = 1 << 34
        r.capabilities.measuredGflops = 1
        return .register(r)
    }

    /// A client key is refused on the worker sockets: it cannot register (control), post step
    /// results (results) or pull model bytes (model source). The refusals are logged per socket.
    func testAClientKeyCannotRegisterPostResultsOrPullTheModel() async throws {
        let (cluster, _) = try running()
        let alice = try XCTUnwrap(Self.alice)
        let codec = WireCodec()
        let modelSource = try cluster.waitForLog("coordinator.log", "model_source=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        let resultsEndpoint = try cluster.waitForLog("coordinator.log", "results=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        let outcome = StepOutcome(pipelineLabel: "forged", planEpoch: 1, stepID: 1, tokens: [], error: "forged")
        var info = Caravan_V1_ModelInfoRequest()
        info.sha256 = String(repeating: "0", count: 64)
        // The three sockets at once: each waits out its silence in the same 2 s.
        let (register, forged, infoRequest) = (try codec.encode(Self.register("alice-worker", key: alice.publicKey)),
                                               try codec.encode(outcome), try codec.encode(.modelInfoRequest(info)))
        async let ack = Self.exchange(cluster.controlEndpoint, keys: alice, register)
        async let result = Self.exchange(resultsEndpoint, keys: alice, forged, wait: .milliseconds(500))
        async let chunk = Self.exchange(modelSource, keys: alice, infoRequest)
        let (acked, _, chunked) = try await (ack, result, chunk)
        XCTAssertNil(acked, "a client key got an answer on the control socket")
        XCTAssertNil(chunked, "a client key got an answer from the model source")
        try await Task.sleep(for: .milliseconds(300))
        for socket in ["control", "results", "model-source"] {
            XCTAssertGreaterThan(refusals(cluster, socket: socket, key: alice.publicKey), 0, "no refusal on \(socket)")
        }
        XCTAssertFalse(cluster.log("coordinator.log").contains("alice-worker"), "the register reached the coordinator")
        XCTAssertFalse(cluster.log("coordinator.log").contains("forged"), "the result reached the coordinator")
    }

    /// A worker key cannot submit jobs (the client socket refuses it), and a key in no list is
    /// refused everywhere.
    func testAWorkerKeyCannotSubmitAndAnUnknownKeyIsRefused() async throws {
        let (cluster, _) = try running()
        let worker = try cluster.makeKey("worker-0.key", listIn: nil)
        let stranger = try CurveKeyPair.generate()
        let codec = WireCodec()
        let acceptedBefore = cluster.log("coordinator.log").components(separatedBy: "job accepted").count
        let submit = try codec.encode(.jobSubmit(JobClient.submit(prompt: [1, 2, 3], sampling: .greedy(2), id: "w")))
        // The three peers at once: each waits out its silence in the same 2 s.
        let strangerRegister = try codec.encode(Self.register("stranger", key: stranger.publicKey))
        async let asWorker = Self.exchange(cluster.clientsEndpoint, keys: worker, submit)
        async let asStranger = Self.exchange(cluster.clientsEndpoint, keys: stranger, submit)
        async let register = Self.exchange(cluster.controlEndpoint, keys: stranger, strangerRegister)
        let answers = try await (asWorker, asStranger, register)
        XCTAssertNil(answers.0, "a worker key was answered on the client socket")
        XCTAssertNil(answers.1, "an unknown key was answered on the client socket")
        XCTAssertNil(answers.2, "an unknown key was answered on the control socket")
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertGreaterThan(refusals(cluster, socket: "clients", key: worker.publicKey), 0)
        XCTAssertGreaterThan(refusals(cluster, socket: "clients", key: stranger.publicKey), 0)
        XCTAssertGreaterThan(refusals(cluster, socket: "control", key: stranger.publicKey), 0)
        XCTAssertEqual(cluster.log("coordinator.log").components(separatedBy: "job accepted").count, acceptedBefore,
                       "a job was accepted from a worker or unknown key")
    }

    /// A client key cannot drain a worker or preview plans (forbidden, with the reason); the
    /// worker keeps serving. An admin key can preview.
    func testAClientCannotDrainOrPreviewPlans() async throws {
        let (cluster, _) = try running()
        let alice = try client(try XCTUnwrap(Self.alice))
        var drain = Caravan_V1_DrainRequest()
        drain.workerID = "worker-0"
        guard case .error(let refused) = try await alice.request(.drainRequest(drain)) else { return XCTFail("drain not refused") }
        XCTAssertEqual(refused.code, "forbidden")
        XCTAssertTrue(refused.message.contains("admin"), refused.message)
        guard case .error(let preview) = try await alice.request(.planPreviewRequest(Caravan_V1_PlanPreviewRequest())) else {
            return XCTFail("plan preview not refused")
        }
        XCTAssertEqual(preview.code, "forbidden")
        let admin = try client(try cluster.adminKeys())
        guard case .planPreview = try await admin.request(.planPreviewRequest(Caravan_V1_PlanPreviewRequest())) else {
            return XCTFail("an admin gets a plan preview")
        }
        guard case .clusterStatus(let status) = try await admin.request(.clusterStatusRequest(Caravan_V1_ClusterStatusRequest())) else {
            return XCTFail("no status")
        }
        XCTAssertTrue(status.serving)
        XCTAssertEqual(status.workers.first?.state, .ready, "the worker was drained")
        XCTAssertEqual(status.clientAccess, "lists")
        XCTAssertEqual(status.callerRoles, "admin")
        XCTAssertFalse(cluster.log("coordinator.log").contains("draining worker"), "a drain started")
    }

    /// Bob cannot read, cancel or attach to Alice's job (it is "not found" to him) nor see it in
    /// the cluster status; Alice and the admin can; her job finishes untouched.
    func testAClientCannotTouchAnotherClientsJob() async throws {
        let (cluster, _) = try running()
        let alice = try client(try XCTUnwrap(Self.alice))
        let bob = try client(try XCTUnwrap(Self.bob))
        let admin = try client(try cluster.adminKeys())
        try await alice.send([JobClient.submit(prompt: [1, 2, 3], sampling: .greedy(48), id: "a")])
        var jobID = ""
        try await alice.receiveEvents(until: { !jobID.isEmpty }, timeout: .seconds(20), operation: "accepted",
                                      detail: { "no accepted event" }) { e in
            if case .accepted? = e.event, e.clientRequestID == "a" { jobID = e.jobID }
        }
        func notFound(_ body: Caravan_V1_Envelope.OneOf_Body, _ what: String) async throws {
            guard case .error(let e) = try await bob.request(body) else { return XCTFail("\(what): Bob got an answer") }
            XCTAssertEqual(e.code, "not_found", "\(what): \(e.message)")
        }
        try await notFound(.jobStatusRequest(.with { $0.jobID = jobID }), "status")
        try await notFound(.jobCancel(.with { $0.jobID = jobID }), "cancel")
        try await notFound(.jobAttach(.with { $0.jobID = jobID }), "attach")
        guard case .clusterStatus(let bobs) = try await bob.request(.clusterStatusRequest(.with { $0.includeFinishedJobs = true })),
              case .clusterStatus(let admins) = try await admin.request(.clusterStatusRequest(.with { $0.includeFinishedJobs = true })) else {
            return XCTFail("no status")
        }
        XCTAssertFalse(bobs.jobs.contains { $0.jobID == jobID }, "Bob sees Alice's job")
        XCTAssertEqual(bobs.callerRoles, "client")
        XCTAssertTrue(admins.jobs.contains { $0.jobID == jobID }, "the admin sees every job")
        // Another connection with Alice's key (the stream's socket keeps its events): ownership is
        // by key, not by connection.
        let aliceAgain = try client(try XCTUnwrap(Self.alice))
        guard case .jobStatus(let own) = try await aliceAgain.request(.jobStatusRequest(.with { $0.jobID = jobID })) else {
            return XCTFail("Alice cannot read her own job")
        }
        XCTAssertEqual(own.jobID, jobID)
        let r = try await alice.collect(["a"], timeout: .seconds(90))
        XCTAssertNil(r["a"]?.error)
        XCTAssertEqual(r["a"]?.finish, .length, "Bob's cancel reached the job")
        XCTAssertEqual(r["a"]?.tokens.count, 48)
    }

    /// Step results are taken only from the worker the last stage was assigned to: another listed
    /// worker flooding the result socket with failed results for every step id of the serving
    /// epoch changes nothing (before, any result matching epoch and step was taken).
    func testAResultFromAnotherWorkerIsIgnored() async throws {
        let (cluster, context) = try running()
        let admin = try client(try cluster.adminKeys())
        guard case .clusterStatus(let status) = try await admin.request(.clusterStatusRequest(Caravan_V1_ClusterStatusRequest())) else {
            return XCTFail("no status")
        }
        let epoch = status.planEpoch
        let intruder = try cluster.makeKey("intruder.key", listIn: cluster.authorizedWorkers)
        let resultsEndpoint = try cluster.waitForLog("coordinator.log", "results=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        let alice = try client(try XCTUnwrap(Self.alice))
        let france = try EngineReference.load().greedy[0]
        try await alice.send([JobClient.submit(prompt: france.prompt_ids, sampling: .greedy(24), id: "victim")])
        let loop = try EventLoop(context: context, name: "intruder")
        defer { loop.shutdown() }
        let socket = try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.apply(.curveClient(keys: intruder, serverPublicKey: cluster.coordinatorKey))
            try socket.connect(resultsEndpoint)
        }
        let codec = WireCodec()
        for step in UInt64(0)..<3000 {
            let forged = StepOutcome(pipelineLabel: "forged", planEpoch: epoch, stepID: step, tokens: [], error: "forged by an intruder")
            try await socket.send(try codec.encode(forged), timeout: .seconds(2))
        }
        let r = try await alice.collect(["victim"], timeout: .seconds(90))
        await socket.close()
        XCTAssertNil(r["victim"]?.error)
        XCTAssertEqual(r["victim"]?.tokens, try ClusterTests.localGreedy(france.prompt_ids, count: 24), "the job's tokens changed")
        let log = cluster.log("coordinator.log")
        XCTAssertFalse(log.contains("forged by an intruder"), "a forged result reached a step")
        XCTAssertTrue(log.contains("dropped a result from a worker that does not run the last stage"))
    }
}
