import CaravanWire
import Foundation
import SwiftProtobuf
import TestSupport
import XCTest
import ZeroMQ

/// A real coordinator and worker (CURVE, open clients, `--join-settle 0`, `--max-jobs 2`) facing
/// peers that lie or press:
/// a client asking for a plan whose sizes overflow 64 bits, a "worker" reporting an infinite
/// speed, frames larger than a socket's largest legitimate one, more jobs than it holds. The
/// coordinator answers with clear errors or drops the frame, and keeps serving.
final class HostilePeerTests: XCTestCase {
    static let shared = SharedCluster()

    override class func setUp() {
        super.setUp()
        shared.start { c in
            try c.start(workers: 1, model: try TestModel.requirePath(), extraCoordinatorArguments: ["--join-settle", "0", "--max-jobs", "2"])
        }
    }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    private func running() throws -> (ClusterProcesses, Context) { try Self.shared.running() }

    private func ctl(_ cluster: ClusterProcesses, _ arguments: [String]) throws -> CLIRun.Output {
        try CLIRun.run(cluster.binaries.appendingPathComponent("caravanctl"),
                       arguments + ["--clients", cluster.clientsEndpoint, "--coordinator-key=\(cluster.coordinatorKey)",
                                    "--key-file", cluster.adminKeyFile],
                       in: cluster.directory, timeout: 30)
    }

    /// The coordinator is alive, serving, and answers status and a short job.
    private func assertServes(_ cluster: ClusterProcesses, context: Context, file: StaticString = #filePath,
                              line: UInt = #line) async throws {
        XCTAssertTrue(cluster.allRunning, "a daemon died:\n\(cluster.log("coordinator.log").suffix(2000))", file: file, line: line)
        let status = try ctl(cluster, ["status"])
        XCTAssertEqual(status.status, 0, status.stderr, file: file, line: line)
        XCTAssertTrue(status.stdout.hasPrefix("cluster: SERVING"), status.stdout, file: file, line: line)
        let client = try JobClient(context: context, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        var greedy = Caravan_V1_SamplingParameters()
        greedy.maxTokens = 3
        let r = try await client.run([JobClient.submit(prompt: [1, 2, 3], sampling: greedy, id: "after")], timeout: .seconds(60))
        XCTAssertNil(r["after"]?.error, file: file, line: line)
        XCTAssertEqual(r["after"]?.tokens.count, 3, file: file, line: line)
    }

    /// A raw CURVE DEALER on `endpoint` with a listed worker's key that no running worker uses
    /// (so that the worker-only sockets admit it; the client socket admits any key).
    private func dealer(_ loop: EventLoop, _ endpoint: String, serverKey: String) throws -> AsyncSocket {
        let keys = try Self.shared.cluster!.makeKey("hostile-worker.key", listIn: Self.shared.cluster!.authorizedWorkers)
        return try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.apply(.curveClient(keys: keys, serverPublicKey: serverKey))
            try socket.connect(endpoint)
        }
    }

    /// An envelope's bytes without the codec's checks (the codec would refuse to send these).
    private func raw(_ body: Caravan_V1_Envelope.OneOf_Body) throws -> [UInt8] {
        var envelope = Caravan_V1_Envelope()
        envelope.protocolVersion = 1
        envelope.body = body
        return try envelope.serializedBytes()
    }

    /// `caravanctl plan --ctx 4294967295 --batch-sequences 4294967295` trapped the coordinator
    /// (integer overflow sizing the KV cache). Now the client gets the planner's reason.
    func testAPlanWhoseSizesOverflowIsRefusedAndTheCoordinatorServesOn() async throws {
        let (cluster, context) = try running()
        let plan = try ctl(cluster, ["plan", "--ctx", "4294967295", "--batch-sequences", "4294967295"])
        XCTAssertEqual(plan.status, 2, "infeasible: \(plan.stdout) \(plan.stderr)")
        XCTAssertTrue(plan.stdout.contains("exceeds 2^64 bytes"), plan.stdout + plan.stderr)
        // The same through the wire, with a model shape whose sizes add up past 2^64.
        let client = try JobClient(context: context, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey,
                                   keys: try cluster.adminKeys())
        var request = Caravan_V1_PlanPreviewRequest()
        request.shape.name = "huge"
        request.shape.layerBytes = Array(repeating: (1 << 50) - 1, count: 1000)
        request.shape.kvBytesPerTokenPerLayer = (1 << 50) - 1
        request.maxContextTokens = .max
        guard case .planPreview(let preview) = try await client.request(.planPreviewRequest(request)) else {
            return XCTFail("no plan preview")
        }
        XCTAssertFalse(preview.feasible)
        XCTAssertTrue(preview.reason.contains("2^64"), preview.reason)
        try await assertServes(cluster, context: context)
    }

    /// A "worker" registering with an infinite (or NaN) measured speed made the planner compute
    /// NaN shares and trap in `Int(_:)`. The register is dropped at the edge, logged with the
    /// field, and the real worker keeps its plan.
    func testAWorkerReportingANonFiniteSpeedIsDropped() async throws {
        let (cluster, context) = try running()
        let loop = try EventLoop(context: context, name: "test-liar")
        defer { loop.shutdown() }
        let socket = try dealer(loop, cluster.controlEndpoint, serverKey: cluster.coordinatorKey)
        var hello = Caravan_V1_Hello()
        hello.protocolVersion = 1
        hello.role = .worker
        hello.nodeID = "liar"
        try await socket.send([Message(try raw(.hello(hello)))], timeout: .seconds(5))
        for (i, speed) in [Double.infinity, .nan].enumerated() {
            var register = Caravan_V1_Register()
            register.workerID = "liar-\(i)"
            register.dataAddress = "tcp://127.0.0.1:1"
            register.capabilities.cores = 1
            register.capabilities.freeMemoryBytes = 1 << 34
            register.capabilities.measuredGflops = speed
            try await socket.send([Message(try raw(.register(register)))], timeout: .seconds(5))
        }
        // The hello is answered; no register is acknowledged.
        var acknowledged = false
        while let frames = try? await socket.receive(timeout: .seconds(2)) {
            if case .message(.registerAck, _)? = try? WireCodec().decode(frames) { acknowledged = true }
        }
        await socket.close()
        XCTAssertFalse(acknowledged, "a register with a non-finite speed was accepted")
        XCTAssertTrue(cluster.log("coordinator.log").contains("measured_gflops"), "the drop names the field")
        try await assertServes(cluster, context: context)
        let status = try ctl(cluster, ["status"])
        XCTAssertFalse(status.stdout.contains("liar"), status.stdout)
    }

    /// Jobs beyond `--max-jobs` unfinished ones are refused at once with the reason; the others
    /// finish, and then new jobs are taken again.
    func testJobsBeyondTheLimitAreRefusedClearly() async throws {
        let (cluster, context) = try running()
        let client = try JobClient(context: context, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        var long = Caravan_V1_SamplingParameters()
        long.temperature = 0
        long.maxTokens = 40
        let jobs = (0..<3).map { JobClient.submit(prompt: [1, 2, 3], sampling: long, id: "j\($0)") }
        let results = try await client.run(jobs, timeout: .seconds(120))
        XCTAssertNil(results["j0"]?.error)
        XCTAssertNil(results["j1"]?.error)
        XCTAssertEqual(results["j0"]?.tokens.count, 40)
        let refusal = try XCTUnwrap(results["j2"]?.error, "\(results)")
        XCTAssertTrue(refusal.contains("limit of 2 unfinished jobs"), refusal)
        try await assertServes(cluster, context: context)
        // Job ids are what cancel, status and attach name: 128 random bits, not a counter.
        let json = try ctl(cluster, ["status", "--json", "--finished"])
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let ids = (object["jobs"] as? [[String: Any]] ?? []).compactMap { $0["job_id"] as? String }
        XCTAssertGreaterThanOrEqual(ids.count, 3, json.stdout)
        for id in ids { XCTAssertNotNil(id.wholeMatch(of: /job-[0-9a-f]{32}/), id) }
        XCTAssertEqual(Set(ids).count, ids.count)
    }

    /// Frames above a socket's largest legitimate frame are dropped by libzmq while they are read
    /// (`ZMQ_MAXMSGSIZE`), before the coordinator buffers or decodes them: no error reply, no log
    /// line from the decoder, and the coordinator serves on.
    func testOversizedFramesAreDroppedBeforeTheyAreDecoded() async throws {
        let (cluster, context) = try running()
        let loop = try EventLoop(context: context, name: "test-oversized")
        defer { loop.shutdown() }
        let limits = WireLimits()
        let modelSource = try cluster.waitForLog("coordinator.log", "model_source=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        // Clients and model source answer an undecodable frame with an ErrorReply: an oversized one
        // must get no answer at all.
        let clients = try dealer(loop, cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        let source = try dealer(loop, modelSource, serverKey: cluster.coordinatorKey)
        let clientsSize = FrameLimits.clients(limits) + 1, sourceSize = FrameLimits.modelSource(limits) + 1
        try await clients.send([Message([UInt8](repeating: 0xA5, count: clientsSize))], timeout: .seconds(5))
        try await source.send([Message([UInt8](repeating: 0xA5, count: sourceSize))], timeout: .seconds(5))
        // The control socket logs what its decoder drops: an oversized frame never gets there.
        let drops = cluster.log("coordinator.log").components(separatedBy: "control socket: dropped a bad frame").count
        let control = try dealer(loop, cluster.controlEndpoint, serverKey: cluster.coordinatorKey)
        try await control.send([Message([UInt8](repeating: 0x5A, count: FrameLimits.control(limits) + 1))], timeout: .seconds(5))
        // A small bad frame on the same socket still reaches the decoder (the check is the size).
        let small = try dealer(loop, cluster.controlEndpoint, serverKey: cluster.coordinatorKey)
        try await small.send([Message([0xde, 0xad])], timeout: .seconds(5))
        // Both silences are waited out at once; the control socket reads its frames meanwhile.
        async let clientsReply = try? clients.receive(timeout: .seconds(2))
        async let sourceReply = try? source.receive(timeout: .seconds(2))
        let replies = await (clientsReply, sourceReply)
        XCTAssertNil(replies.0, "clients: a \(clientsSize)-byte frame reached the decoder")
        XCTAssertNil(replies.1, "model source: a \(sourceSize)-byte frame reached the decoder")
        for socket in [clients, source, control, small] { await socket.close() }
        let after = cluster.log("coordinator.log").components(separatedBy: "control socket: dropped a bad frame").count
        XCTAssertEqual(after - drops, 1, "only the small bad frame reached the decoder")
        try await assertServes(cluster, context: context)
    }
}
