import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// A worker's KV memory is bounded by its assignment whatever its peers send (issue 14): on a
/// real cluster sized small (`--ctx 256 --batch-sequences 2`, one worker), a peer admitted to the
/// worker's data socket (it holds the coordinator's key) sends steps opening 10x the plan's
/// sequences with long contexts. The worker runs what fits in the plan's KV room, refuses the rest
/// with a clear reason (logged once, not per step), its resident memory stays within the plan's KV,
/// and a job afterwards runs. (Before, every step allocated: 20 sequences of 250 positions grew the
/// worker by ~8x the plan's KV.)
final class StageKVBoundTests: XCTestCase {
    func testAPeerOpeningTenTimesThePlansSequencesCannotGrowTheWorkersKV() async throws {
        let cluster = try ClusterProcesses()
        defer { cluster.stopAndRemove() }
        let model = try TestModel.requirePath()
        let (context, batch, length) = (256, 2, 250)
        // A refused step waits 0.1 s (not the daemon's 0.5 s) for releases that never come here.
        try cluster.start(workers: 1, model: model, extraCoordinatorArguments: [
            "--ctx", "\(context)", "--batch-sequences", "\(batch)", "--join-settle", "0", "--lanes", "1"],
            extraWorkerArguments: { _ in ["--kv-release-grace", "0.1"] })
        // F16 keys and values of every layer, for the positions the plan sized.
        let kvBound = try TestModel.kvBytes(path: model, positions: context * batch)
        _ = try cluster.waitForLog("worker-0.log", "(stage loaded)", timeout: .seconds(10))
        let loaded = try XCTUnwrap(cluster.log("worker-0.log").split(separator: "\n").last { $0.contains("stage loaded") })
        let epoch = try XCTUnwrap(loaded.firstMatch(of: /epoch=([0-9]+)/).flatMap { UInt64($0.1) })

        let zmq = try Context()
        let loop = try EventLoop(context: zmq, name: "test-kv-bound")
        defer { loop.shutdown() }
        let keys = try cluster.coordinatorKeyPair()
        let peer = try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.apply(.curveClient(keys: keys, serverPublicKey: cluster.workerDataKeys[0]))
            try socket.set(.linger, 0)
            try socket.connect(cluster.workerDataEndpoints[0])
        }
        let worker = cluster.workers[0].processIdentifier
        let baseline = residentBytes(pid: worker) ?? 0
        XCTAssertGreaterThan(baseline, 0)
        let codec = WireCodec()
        // 20 sequences (10x the plan's 2) of 250 positions each, two per step.
        for i in 0..<10 {
            let first = UInt64(1 << 40) + UInt64(2 * i)
            let rows = [first, first + 1].flatMap { s in
                (0..<length).map { p in SequenceRow(sequenceID: s, position: UInt32(p), tokenID: UInt32(1 + p % 100)) }
            }
            let step = ActivationStep(pipelineLabel: "hostile", planEpoch: epoch, stepID: 9_000_000 + UInt64(i), rows: rows, tensor: nil)
            try await peer.send(try codec.encode(step), timeout: .seconds(5))
        }
        // Then a step of another epoch: the worker handles one connection's steps in order, so
        // when it reports this one ("step failed", a line of its own) it has answered the ten.
        let marker = ActivationStep(pipelineLabel: "hostile", planEpoch: epoch + 1_000, stepID: 9_000_010,
                                    rows: [SequenceRow(sequenceID: 1 << 41, position: 0, tokenID: 1)], tensor: nil)
        try await peer.send(try codec.encode(marker), timeout: .seconds(5))
        // Each refused step waits its grace for releases that never come.
        let deadline = ContinuousClock.now + .seconds(30)
        var peak = baseline
        while !cluster.log("worker-0.log").contains("step=9000010"), ContinuousClock.now < deadline {
            peak = max(peak, residentBytes(pid: worker) ?? 0)
            try await Task.sleep(for: .milliseconds(50))
        }
        peak = max(peak, residentBytes(pid: worker) ?? 0)
        await peer.close()
        let log = cluster.log("worker-0.log")
        let refusals = log.split(separator: "\n").filter { $0.contains("refused a step beyond the plan's limits") }
        XCTAssertTrue(log.contains("step=9000010"), "the worker answered every step:\n\(log.suffix(3000))")
        // Logged within the log budget (a few per sender per 10 s), not once per step.
        XCTAssertTrue((1...5).contains(refusals.count), "\(refusals.count) refusals logged:\n\(log.suffix(3000))")
        XCTAssertTrue(refusals.first?.contains("no KV room") ?? false, "\(refusals)")
        XCTAssertTrue(refusals.first?.contains("the plan sized \(context * batch) (context \(context) x \(batch) sequences)") ?? false,
                      "\(refusals)")
        XCTAssertTrue(refusals.first?.contains("sender=\(keys.publicKey)") ?? false, "\(refusals)")
        // The refusals reached the coordinator as the steps' results (dropped there: it sent no such
        // step), logged within its log budget.
        let results = cluster.log("coordinator.log").split(separator: "\n").filter { $0.contains("step=90000") }
        XCTAssertTrue((1...5).contains(results.count), "\(results.count) dropped results logged")
        // The plan's KV plus room for the work buffers of a 500-row step and allocator slack
        // (without the bound: ~10x the plan's KV).
        let growth = peak - baseline
        XCTAssertLessThanOrEqual(growth, kvBound + 8 << 20,
                                 "worker RSS grew \(growth >> 10) KiB; the plan sized \(kvBound >> 10) KiB of KV")
        print("kv bound: 20 hostile sequences, worker RSS +\(growth >> 10) KiB, plan KV \(kvBound >> 10) KiB")

        // A job afterwards runs.
        let client = try JobClient(context: zmq, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        var greedy = Caravan_V1_SamplingParameters()
        greedy.temperature = 0
        greedy.maxTokens = 4
        let r = try await client.run([JobClient.submit(prompt: [1, 2, 3], sampling: greedy, id: "after")], timeout: .seconds(60))
        XCTAssertNil(r["after"]?.error)
        XCTAssertEqual(r["after"]?.tokens.count, 4)
        XCTAssertTrue(cluster.allRunning)
    }
}
