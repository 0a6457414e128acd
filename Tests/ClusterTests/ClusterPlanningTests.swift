import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// A cluster whose workers cannot hold the model: the coordinator says so with numbers and refuses
/// jobs with that reason (plain TCP mode).
final class ClusterPlanningTests: XCTestCase {
    /// A worker killed mid-service: its jobs fail, the coordinator re-plans over the worker left
    /// (new epoch) and serves again with the same tokens.
    func testLostWorkerMakesTheCoordinatorReplan() async throws {
        let cluster = try ClusterProcesses()
        defer { cluster.stopAndRemove() }
        let model = try TestModel.requirePath()
        try cluster.start(workers: 2, model: model, extraCoordinatorArguments: ["--activation-dtype", "f32"])
        kill(cluster.workers[1].processIdentifier, SIGKILL)
        _ = try cluster.waitForLog("coordinator.log", "(re-planning)", timeout: .seconds(30))
        _ = try cluster.waitForLog("coordinator.log", "epoch=2 lanes=(2)", timeout: .seconds(30))
        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        let france = try EngineReference.load().greedy[0]
        let r = try await client.run([JobClient.submit(prompt: france.prompt_ids, sampling: {
            var s = Caravan_V1_SamplingParameters()
            s.maxTokens = 8
            return s
        }(), id: "after")], timeout: .seconds(60))
        XCTAssertNil(r["after"]?.error)
        XCTAssertEqual(r["after"]?.tokens, try ClusterTests.localGreedy(france.prompt_ids, count: 8))
        XCTAssertTrue(cluster.coordinator?.isRunning ?? false)
        XCTAssertTrue(cluster.workers[0].isRunning)
    }

    /// With `--authorized-keys`, only listed workers and clients get through.
    func testAuthorizedKeysAdmitOnlyListedPeers() async throws {
        let cluster = try ClusterProcesses()
        defer { cluster.stopAndRemove() }
        let worker = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        let workerKeyFile = cluster.directory.appendingPathComponent("worker.key").path
        try (worker.secretKey + "\n").write(toFile: workerKeyFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: workerKeyFile)
        let allowed = cluster.directory.appendingPathComponent("authorized").path
        try "# workers and clients\n\(worker.publicKey)\n\(client.publicKey)\n".write(toFile: allowed, atomically: true, encoding: .utf8)
        try cluster.start(workers: 1, model: try TestModel.requirePath(), extraCoordinatorArguments: ["--authorized-keys", allowed],
                          extraWorkerArguments: { _ in ["--key-file", workerKeyFile] })

        let context = try Context()
        let loop = try EventLoop(context: context, name: "authorized-test")
        defer { loop.shutdown() }
        let codec = WireCodec()
        func ask(with keys: CurveKeyPair) async throws -> [Message]? {
            let socket = try AsyncSocket(loop: loop, type: .dealer) { socket in
                try socket.apply(.curveClient(keys: keys, serverPublicKey: cluster.coordinatorKey))
                try socket.connect(cluster.clientsEndpoint)
            }
            var request = Caravan_V1_JobStatusRequest()
            request.jobID = "job-1"
            try await socket.send(try codec.encode(.jobStatusRequest(request), requestID: 3), timeout: .seconds(2))
            let reply = try? await socket.receive(timeout: .seconds(3))
            await socket.close()
            return reply
        }
        let listed = try await ask(with: client)
        XCTAssertNotNil(listed, "a listed client is answered")
        let stranger = try await ask(with: try CurveKeyPair.generate())
        XCTAssertNil(stranger, "an unlisted client is not")
        XCTAssertTrue(cluster.log("coordinator.log").contains("refused a connection"))
    }

    /// Too little memory: the coordinator says why with numbers, jobs wait (queued, with that
    /// reason) and fail only at the queue timeout; a worker joining later makes service resume.
    func testTooLittleMemoryMakesJobsWaitUntilAWorkerJoins() async throws {
        let cluster = try ClusterProcesses()
        defer { cluster.stopAndRemove() }
        try cluster.startInsecure(model: try TestModel.requirePath(), memoryMiB: 40,
                                  extraCoordinatorArguments: ["--queue-timeout", "2"])
        let reason = try cluster.waitForLog("coordinator.log", "reason=(.*) \\[Coordinator\\] no plan possible now", timeout: .seconds(60))
        XCTAssertTrue(reason.contains("cannot hold the model"), reason)
        XCTAssertTrue(reason.contains("small 40 MiB"), reason)

        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: nil)
        var sampling = Caravan_V1_SamplingParameters()
        sampling.maxTokens = 4
        try await client.socket.send(try client.codec.encode(.jobSubmit(JobClient.submit(prompt: [1, 2, 3], sampling: sampling, id: "x"))),
                                     timeout: .seconds(5))
        // Job ids are random: take it from the accepted event.
        var jobID = ""
        try await client.receiveEvents(until: { !jobID.isEmpty }, timeout: .seconds(10), operation: "accepted",
                                       detail: { "no accepted event" }) { e in
            if case .accepted? = e.event, e.clientRequestID == "x" { jobID = e.jobID }
        }
        try await Task.sleep(for: .milliseconds(500))
        var request = Caravan_V1_JobStatusRequest()
        request.jobID = jobID
        guard case .jobStatus(let status) = try await client.request(.jobStatusRequest(request)) else { return XCTFail("no status") }
        XCTAssertEqual(status.state, .queued, "the job waits instead of failing")
        XCTAssertTrue(status.waitingReason.contains("cannot hold the model"), status.waitingReason)
        let r = try await client.collect(["x"], timeout: .seconds(30))
        let error = try XCTUnwrap(r["x"]?.error, "the job fails at the queue timeout")
        XCTAssertTrue(error.contains("within 2.0 s") && error.contains("cannot hold the model"), error)
        XCTAssertTrue(cluster.allRunning, "both daemons keep running")

        // A worker with enough memory joins: the cluster plans by itself and serves again.
        try cluster.addWorker()
        _ = try cluster.waitForLog("coordinator.log", "(serving)", timeout: .seconds(60))
        let after = try await client.run([JobClient.submit(prompt: [1, 2, 3], sampling: sampling, id: "y")], timeout: .seconds(60))
        XCTAssertNil(after["y"]?.error)
        XCTAssertEqual(after["y"]?.tokens.count, 4)
    }
}
