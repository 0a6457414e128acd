import CaravanCore
import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// The workers' data sockets admit only the coordinator and the stage before them (CURVE allow-list
/// from the stage assignments), on the shared cluster of ``ClusterTests``.
extension ClusterTests {
    /// A client with an unknown CURVE key that knows a serving worker's data endpoint and public
    /// key gets no step through: the worker refuses the handshake, logs it and keeps serving (a
    /// job afterwards gives the same tokens). The same step sent with the coordinator's key does
    /// arrive (the worker logs it as failed: wrong epoch), so a delivered step would be seen.
    func testWorkerDataSocketsRefuseUnknownKeys() async throws {
        let (cluster, client) = try running()
        let context = try XCTUnwrap(Self.shared.context)
        let loop = try EventLoop(context: context, name: "test-allow-list")
        defer { loop.shutdown() }
        let codec = WireCodec()
        let stranger = try CurveKeyPair.generate()
        let coordinatorKeys = try cluster.coordinatorKeyPair()

        @Sendable func send(step id: UInt64, toWorker i: Int, as keys: CurveKeyPair) async throws {
            let step = ActivationStep(pipelineLabel: "allow-list", planEpoch: 9_999, stepID: id,
                                      rows: [SequenceRow(sequenceID: 1 << 43, position: 0, tokenID: 1)], tensor: nil)
            let socket = try AsyncSocket(loop: loop, type: .dealer) { socket in
                try socket.apply(.curveClient(keys: keys, serverPublicKey: cluster.workerDataKeys[i]))
                try socket.set(.linger, 0)
                try socket.connect(cluster.workerDataEndpoints[i])
            }
            // Queued until the handshake ends; a refused handshake drops it with the connection
            // (the send may then time out instead).
            try? await socket.send(try codec.encode(step), timeout: .seconds(2))
            try await Task.sleep(for: .milliseconds(300))
            await socket.close()
        }
        func lines(_ log: String, containing parts: [String]) -> [Substring] {
            cluster.log(log).split(separator: "\n").filter { line in parts.allSatisfy { line.contains($0) } }
        }

        let workers = cluster.workerDataEndpoints.indices
        let strangerStep: @Sendable (Int) -> UInt64 = { UInt64(7_700_001 + $0) }
        let coordinatorStep: @Sendable (Int) -> UInt64 = { UInt64(8_800_001 + $0) }
        // Every worker at once: a stranger's step and the coordinator's, each over its own connection.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in workers {
                group.addTask { try await send(step: strangerStep(i), toWorker: i, as: stranger) }
                group.addTask { try await send(step: coordinatorStep(i), toWorker: i, as: coordinatorKeys) }
            }
            try await group.waitForAll()
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while workers.contains(where: { lines("worker-\($0).log", containing: ["step=\(coordinatorStep($0))", "step failed"]).isEmpty }),
              ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(300))
        for i in workers {
            let log = "worker-\(i).log"
            XCTAssertFalse(lines(log, containing: ["step=\(coordinatorStep(i))", "step failed"]).isEmpty,
                           "worker \(i): the coordinator's step must arrive")
            XCTAssertTrue(lines(log, containing: ["step=\(strangerStep(i))"]).isEmpty, "worker \(i): a stranger's step got through")
            let refusals = lines(log, containing: ["data socket: refused a connection", "key=\(stranger.publicKey)"])
            XCTAssertEqual(refusals.count, 1, "worker \(i) logs the refusal once:\n\(cluster.log(log).suffix(2000))")
            XCTAssertTrue(refusals.first?.contains("address=127.0.0.1") ?? false, "\(refusals)")
            XCTAssertTrue(refusals.first?.contains("reason=unknown client public key") ?? false, "\(refusals)")
            XCTAssertTrue(lines(log, containing: ["data socket admits", cluster.coordinatorKey]).count >= 1,
                          "worker \(i) logs the set it admits")
        }
        XCTAssertTrue(cluster.allRunning)

        // What each worker admits: the coordinator, from the second stage on the worker of the
        // stage before it (its steps), and up to the second-to-last stage the worker of the stage
        // after it (the KV rows it mirrors there) (the last assignment each logged).
        var stageOf: [Int: Int] = [:]
        var admitted: [Int: Substring] = [:]
        for i in cluster.workerDataEndpoints.indices {
            let log = "worker-\(i).log"
            let loaded = try XCTUnwrap(lines(log, containing: ["stage loaded"]).last)
            let stage = try XCTUnwrap(loaded.firstRange(of: /stage=([0-9]+)\//)).lowerBound
            stageOf[i] = Int(loaded[stage...].dropFirst("stage=".count).prefix { $0.isNumber })
            admitted[i] = try XCTUnwrap(lines(log, containing: ["data socket admits"]).last)
        }
        for (i, stage) in stageOf {
            let keys = try XCTUnwrap(admitted[i]?.firstMatch(of: /keys=(.*) \[Worker\]/)?.1).split(separator: " ").map(String.init)
            let neighbours = [stage - 1, stage + 1].compactMap { s in stageOf.first { $0.value == s }?.key }
            XCTAssertEqual(Set(keys), Set([cluster.coordinatorKey] + neighbours.map { cluster.workerDataKeys[$0] }), "stage \(stage)")
            XCTAssertEqual(keys.count, 1 + neighbours.count, "stage \(stage) admits no one else")
        }

        let france = try EngineReference.load().greedy[0]
        let r = try await client.run([JobClient.submit(prompt: france.prompt_ids, sampling: .greedy(8), id: "after-stranger")])
        XCTAssertNil(r["after-stranger"]?.error)
        XCTAssertEqual(r["after-stranger"]?.tokens, try Self.localGreedy(france.prompt_ids, count: 8))
        XCTAssertTrue(cluster.allRunning)
    }
}
