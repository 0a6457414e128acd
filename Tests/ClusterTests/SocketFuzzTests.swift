import CaravanWire
import Foundation
import GGUF
import TestSupport
import XCTest
import ZeroMQ

/// A seeded fuzzer against every socket of a real coordinator and worker (CURVE): mutated frames
/// of every message each socket reads (``FrameCorpus``), sent by authenticated but hostile peers
/// — a listed worker key on the control socket, the last stage's worker key on the result socket
/// and the model source, an admin key on the client socket, the coordinator's key on the worker's
/// data socket. After each batch both daemons must be running, their resident memory within a
/// bound, and a normal job must give its greedy tokens.
///
/// Short run in the suite; `CARAVAN_FUZZ_ITERATIONS=N` (frames per socket, `Scripts/fuzz`) for a
/// long one, `CARAVAN_FUZZ_SEED` to replay another seed.
final class SocketFuzzTests: XCTestCase {
    static let shared = SharedCluster()

    override class func setUp() {
        super.setUp()
        shared.start { c in
            try c.start(workers: 1, model: try TestModel.requirePath(), extraCoordinatorArguments: ["--join-settle", "0"])
        }
    }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    /// A socket under fuzz: where it is, which key speaks to it, its seeds.
    private struct Target: Sendable {
        var name: String
        var endpoint: String
        var serverKey: String
        var keys: CurveKeyPair
        var seeds: @Sendable (inout SplitMix) -> [[[UInt8]]]

        /// Sends the mutated frames of `cases` over a new connection (what the daemon sent back,
        /// unread, goes with it), lets the daemon read them, closes; returns how many sends
        /// timed out.
        func send(_ cases: Range<Int>, of run: FuzzRun, context: Context) async throws -> Int {
            let loop = try EventLoop(context: context, name: "fuzz-\(name)")
            defer { loop.shutdown() }
            let socket = try AsyncSocket(loop: loop, type: .dealer) { s in
                try s.apply(.curveClient(keys: keys, serverPublicKey: serverKey))
                try s.set(.sendHighWaterMark, 10_000)
                try s.connect(endpoint)
            }
            var failures = 0
            for i in cases {
                var rng = SplitMix(seed: run.seed(ofCase: i) ^ UInt64(name.utf8.count))
                let frames = FrameCorpus.mutate(rng.pick(seeds(&rng)), &rng)
                do {
                    try await socket.send(frames.map { Message($0) }, timeout: .seconds(5))
                } catch {
                    failures += 1
                }
            }
            // Let the daemon read the batch before the connection goes.
            try await Task.sleep(for: .milliseconds(200))
            await socket.close()
            return failures
        }
    }

    /// Frames per socket between two health checks: the check (200 ms per socket for the daemon to
    /// read its frames, then a canary job) costs more than the frames, so a long run checks less often.
    private static func batch(_ run: FuzzRun) -> Int { run.isLong ? 1000 : 100 }

    func testEverySocketSurvivesMutatedFrames() async throws {
        let (cluster, context) = try Self.shared.running()
        do {
            try await fuzzEverySocket(cluster, context)
        } catch {
            XCTFail("\(error)\ncoordinator:\n\(cluster.log("coordinator.log").suffix(5000))\nworker:\n\(cluster.log("worker-0.log").suffix(3000))")
            throw error
        }
    }

    private func fuzzEverySocket(_ cluster: ClusterProcesses, _ context: Context) async throws {
        let run = FuzzRun(short: 300, salt: 1)
        let admin = try JobClient(context: context, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey,
                                  keys: try cluster.adminKeys())
        guard case .clusterStatus(let status) = try await admin.request(.clusterStatusRequest(Caravan_V1_ClusterStatusRequest())) else {
            return XCTFail("no status")
        }
        let model = try TestModel.requirePath()
        let hostile = try cluster.makeKey("fuzz-worker.key", listIn: cluster.authorizedWorkers)
        let lastStage = try cluster.makeKey("worker-0.key", listIn: nil)
        let corpus = FrameCorpus(planEpoch: status.planEpoch, modelSHA256: status.model.sha256,
                                 modelSize: UInt64(try FileManager.default.attributesOfItem(atPath: model)[.size] as? Int ?? 0),
                                 hostileWorkerKey: hostile.publicKey)
        let modelSource = try cluster.waitForLog("coordinator.log", "model_source=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        let targets = [
            Target(name: "clients", endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey, keys: try cluster.adminKeys(),
                   seeds: { corpus.clientSeeds(&$0).map { [$0] } }),
            Target(name: "control", endpoint: cluster.controlEndpoint, serverKey: cluster.coordinatorKey, keys: hostile,
                   seeds: { corpus.controlSeeds(&$0).map { [$0] } }),
            Target(name: "results", endpoint: cluster.resultsEndpoint, serverKey: cluster.coordinatorKey, keys: lastStage,
                   seeds: { corpus.resultSeeds(&$0) }),
            Target(name: "model source", endpoint: modelSource, serverKey: cluster.coordinatorKey, keys: lastStage,
                   seeds: { corpus.modelSourceSeeds(&$0).map { [$0] } }),
            Target(name: "worker data", endpoint: cluster.workerDataEndpoints[0], serverKey: cluster.workerDataKeys[0],
                   keys: try cluster.coordinatorKeyPair(), seeds: { corpus.dataSeeds(&$0) }),
        ]
        let france = try EngineReference.load().greedy[0]
        let expected = try ClusterTests.localGreedy(france.prompt_ids, count: 8)
        let coordinatorPID = try XCTUnwrap(cluster.coordinator?.processIdentifier)
        let workerPID = try XCTUnwrap(cluster.workers.first?.processIdentifier)
        // Memory after start-up and one job; the bound leaves room for the plan's KV cache (256
        // positions x 4 sequences x 30 layers x 192 x 4 bytes = 23 MiB), the steps in flight and
        // allocator slack, far below what one unbounded table or cache grows to under fuzz.
        try await assertServes(cluster, admin: admin, france.prompt_ids, expected, after: "start-up")
        let baseline = (coordinator: residentBytes(pid: coordinatorPID) ?? 0, worker: residentBytes(pid: workerPID) ?? 0)
        let bound = 192 << 20
        let started = ContinuousClock.now
        var sent = 0
        var sendFailures = 0
        var done = 0
        while done < run.iterations {
            let count = min(Self.batch(run), run.iterations - done)
            // Every socket's batch at once (each over its own connection, as from five peers).
            let cases = done..<done + count
            let failures = try await withThrowingTaskGroup(of: Int.self) { group in
                for target in targets {
                    group.addTask { try await target.send(cases, of: run, context: context) }
                }
                return try await group.reduce(0, +)
            }
            sent += count * targets.count - failures
            sendFailures += failures
            done += count
            try await cancelEveryJob(admin)
            try await assertServes(cluster, admin: admin, france.prompt_ids, expected, after: "cases \(done - count)..<\(done) (seed \(run.seed))")
            let coordinatorRSS = residentBytes(pid: coordinatorPID) ?? 0
            let workerRSS = residentBytes(pid: workerPID) ?? 0
            XCTAssertLessThan(coordinatorRSS, baseline.coordinator + bound,
                              "coordinator memory grew from \(baseline.coordinator >> 20) to \(coordinatorRSS >> 20) MiB by case \(done)")
            XCTAssertLessThan(workerRSS, baseline.worker + bound,
                              "worker memory grew from \(baseline.worker >> 20) to \(workerRSS >> 20) MiB by case \(done)")
            if !cluster.allRunning { break }
        }
        let seconds = Double((ContinuousClock.now - started).components.seconds)
        let summary = "socket fuzz: \(targets.count) sockets x \(run.iterations) cases, \(sent) messages sent, "
            + "\(sendFailures) sends timed out, \(Int(seconds)) s, seed \(run.seed); RSS coordinator "
            + "\((residentBytes(pid: coordinatorPID) ?? 0) >> 20) MiB (from \(baseline.coordinator >> 20)), worker "
            + "\((residentBytes(pid: workerPID) ?? 0) >> 20) MiB (from \(baseline.worker >> 20))"
        print(summary)
        XCTAssertEqual(sendFailures, 0, summary)
    }

    /// Cancels every unfinished job (the fuzzer's accepted submits) as the admin, and waits (at
    /// most 30 s) until none is left. A cancel is not answered itself: the job's events end it.
    private func cancelEveryJob(_ admin: JobClient) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let reply: Caravan_V1_Envelope.OneOf_Body
            do {
                reply = try await admin.request(.clusterStatusRequest(Caravan_V1_ClusterStatusRequest()), timeout: .seconds(20))
            } catch {
                XCTFail("no status after a fuzz batch: \(error)")
                throw error
            }
            guard case .clusterStatus(let status) = reply else { return XCTFail("no status after a fuzz batch") }
            let unfinished = status.jobs.filter { [.queued, .prefill, .generating].contains($0.state) }
            if unfinished.isEmpty { return }
            guard ContinuousClock.now < deadline else { return XCTFail("\(unfinished.count) jobs still unfinished 30 s after their cancel") }
            for job in unfinished {
                try await admin.socket.send(try admin.codec.encode(.jobCancel(.with { $0.jobID = job.jobID; $0.reason = "fuzz batch over" })),
                                            timeout: .seconds(5))
            }
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    /// Both daemons run, and a greedy job gives the single-node tokens.
    private func assertServes(_ cluster: ClusterProcesses, admin: JobClient, _ prompt: [Int32], _ expected: [Int32],
                              after: String, file: StaticString = #filePath, line: UInt = #line) async throws {
        XCTAssertTrue(cluster.allRunning, "a daemon died after \(after):\n\(cluster.log("coordinator.log").suffix(3000))\n"
                      + cluster.log("worker-0.log").suffix(3000), file: file, line: line)
        guard cluster.allRunning else { throw ClusterProcesses.Failure(description: "a daemon died") }
        var greedy = Caravan_V1_SamplingParameters()
        greedy.temperature = 0
        greedy.maxTokens = UInt32(expected.count)
        let id = "canary-\(UInt32.random(in: 0...UInt32.max))"
        let r: [String: JobClient.Result]
        do {
            r = try await admin.run([JobClient.submit(prompt: prompt, sampling: greedy, id: id)], timeout: .seconds(60))
        } catch {
            XCTFail("no answer to a normal job after \(after): \(error)\ncoordinator:\n\(cluster.log("coordinator.log").suffix(4000))\n"
                    + "worker:\n\(cluster.log("worker-0.log").suffix(4000))", file: file, line: line)
            throw error
        }
        XCTAssertNil(r[id]?.error, "after \(after)", file: file, line: line)
        XCTAssertEqual(r[id]?.tokens, expected, "after \(after)", file: file, line: line)
    }
}
