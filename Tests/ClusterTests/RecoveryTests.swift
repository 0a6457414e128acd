import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Faults during generation on real processes (loopback) beyond the test bed's (`FaultTests`: kill,
/// freeze, cut, add, drain): a slowed-down worker and a coordinator crash. Every job must end with
/// exactly the tokens of the fault-free run: none lost, none doubled, none changed.
final class RecoveryTests: XCTestCase {

    /// Four concurrent jobs, greedy and seeded sampling.
    private static func jobs(tokens: UInt32, tag: String) throws -> [Caravan_V1_JobSubmit] {
        let p = try EngineReference.load().greedy.map(\.prompt_ids)
        return [
            JobClient.submit(prompt: p[0], sampling: .seeded(0, seed: 1, tokens: tokens), id: "\(tag)-greedy-a"),
            JobClient.submit(prompt: p[1], sampling: .seeded(0, seed: 1, tokens: tokens), id: "\(tag)-greedy-b"),
            JobClient.submit(prompt: p[2], sampling: .seeded(0.9, seed: 77, tokens: tokens), id: "\(tag)-seeded-a"),
            JobClient.submit(prompt: p[0], sampling: .seeded(0.7, seed: 4242, tokens: tokens), id: "\(tag)-seeded-b"),
        ]
    }

    private func strip(_ results: [String: JobClient.Result], _ tag: String) -> [String: JobClient.Result] {
        Dictionary(uniqueKeysWithValues: results.map { (String($0.key.dropFirst(tag.count + 1)), $0.value) })
    }

    /// Runs the jobs fault-free, then again with `fault` injected once `after` tokens (all jobs
    /// together) have streamed, and compares every job's token ids and text.
    private func checkSurvives(_ cluster: ClusterProcesses, tokens: UInt32 = 40, after: Int = 12,
                               _ name: String, fault: () -> Void) async throws {
        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        let reference = strip(try await client.run(try Self.jobs(tokens: tokens, tag: "ref"), timeout: .seconds(120)), "ref")
        var injected = false
        let faulty = strip(try await client.run(try Self.jobs(tokens: tokens, tag: name), timeout: .seconds(180)) { _, results in
            guard !injected, results.values.reduce(0, { $0 + $1.tokens.count }) >= after else { return }
            injected = true
            fault()
        }, name)
        XCTAssertTrue(injected, "the fault was injected during generation")
        XCTAssertEqual(reference.count, 4)
        for (id, expected) in reference {
            XCTAssertNil(expected.error, "reference \(id)")
            XCTAssertGreaterThan(expected.tokens.count, after, "reference \(id) ran past the fault point")
            XCTAssertNil(faulty[id]?.error, "\(name): job \(id) failed: \(faulty[id]?.error ?? "")")
            XCTAssertEqual(faulty[id]?.tokens, expected.tokens, "\(name): job \(id) lost, doubled or changed tokens")
            XCTAssertEqual(faulty[id]?.text, expected.text, "\(name): job \(id) text differs")
        }
    }

    private func cluster(workers: Int) throws -> ClusterProcesses {
        let c = try ClusterProcesses()
        try c.start(workers: workers, model: try TestModel.requirePath(), extraCoordinatorArguments: [
            "--activation-dtype", "f32", "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1.5",
        ])
        return c
    }

    /// A worker slowed down (stopped 60 ms of every 100, like a CPU hog) makes the coordinator
    /// move layers away from it, without changing any job's output.
    func testASlowWorkerLosesLayersAndJobsKeepTheirOutput() async throws {
        let cluster = try ClusterProcesses()
        defer {
            cluster.stop()
            try? FileManager.default.removeItem(at: cluster.directory)
        }
        try cluster.start(workers: 2, model: try TestModel.requirePath(), extraCoordinatorArguments: [
            "--activation-dtype", "f32", "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1.5", "--rebalance-interval", "1",
        ])
        let slow = cluster.workers[1].processIdentifier
        let stop = LockedFlag()
        let throttle = Thread {
            while !stop.value {
                kill(slow, SIGSTOP)
                Thread.sleep(forTimeInterval: 0.06)
                kill(slow, SIGCONT)
                Thread.sleep(forTimeInterval: 0.04)
            }
            kill(slow, SIGCONT)
        }
        defer { stop.set() }
        // long enough for the slow window (SlowWatch: a bottleneck sustained over 32 steps) to pass
        try await checkSurvives(cluster, tokens: 240, after: 4, "slow") { throttle.start() }
        stop.set()
        let log = cluster.log("coordinator.log")
        XCTAssertTrue(log.contains("worker-1 is slow"), String(log.suffix(3000)))
    }

    /// The coordinator crashes mid-job; restarted on the same state directory it continues the job,
    /// and a client re-attaching by job id gets exactly the rest of the stream.
    func testACoordinatorRestartContinuesJobsAndClientsReattach() async throws {
        let cluster = try cluster(workers: 2)
        defer {
            cluster.stop()
            try? FileManager.default.removeItem(at: cluster.directory)
        }
        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        let job = try Self.jobs(tokens: 48, tag: "restart")[2]
        let reference = try await client.run([job], timeout: .seconds(120))[job.clientRequestID]!
        XCTAssertEqual(reference.tokens.count, 48)

        var jobID = ""
        // The job belongs to the key that submitted it: the client attaching after the restart
        // uses the same key (another key would be told "not found").
        let ownerKeys = try CurveKeyPair.generate()
        let second = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey,
                                   keys: ownerKeys)
        var before = JobClient.Result()
        do {
            _ = try await second.run([job], timeout: .seconds(20)) { event, results in
                if jobID.isEmpty { jobID = event.jobID }
                guard let r = results[job.clientRequestID], r.tokens.count >= 10, before.tokens.isEmpty else { return }
                before = r
                cluster.killCoordinator()
            }
            XCTFail("the stream should stop with the coordinator")
        } catch {
            // The stream went silent: expected.
        }
        XCTAssertFalse(jobID.isEmpty)
        XCTAssertGreaterThanOrEqual(before.tokens.count, 10)
        try cluster.restartCoordinator()
        let third = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey,
                                  keys: ownerKeys)
        var attach = Caravan_V1_JobAttach()
        attach.jobID = jobID
        attach.receivedTokens = UInt32(before.tokens.count)
        try await third.socket.send(try third.codec.encode(.jobAttach(attach)), timeout: .seconds(5))
        let rest = try await third.collect([job.clientRequestID], from: [job.clientRequestID: before], timeout: .seconds(120))
        XCTAssertEqual(rest[job.clientRequestID]?.tokens, reference.tokens, "tokens before the crash + after the attach")
        XCTAssertEqual(rest[job.clientRequestID]?.text, reference.text)
    }
}

/// A flag set from one thread and read from another.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var value: Bool { lock.withLock { flag } }
    func set() { lock.withLock { flag = true } }
}
