import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Issue 13's detection on real processes with a heartbeat timeout of 10 s: a worker killed with
/// `kill -9` is noticed through its closed control connection and lost in under a second, while a
/// worker that is only stopped (`SIGSTOP`) keeps its connection until the coordinator's own
/// liveness check drops it, which leaves it to the heartbeat timeout: it is not lost.
final class ConnectionLossClusterTests: XCTestCase {
    private static func job(tag: String) throws -> Caravan_V1_JobSubmit {
        let p = try EngineReference.load().greedy.map(\.prompt_ids)
        return JobClient.submit(prompt: p[1], sampling: .seeded(0, seed: 1, tokens: 40), id: "\(tag)-greedy")
    }

    /// Waits (bounded) until `cluster`'s coordinator log contains `fragment`; returns when it did
    /// (nil: never).
    private static func waitForLine(_ cluster: ClusterProcesses, _ fragment: String, timeout: Duration) -> ContinuousClock.Instant? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if cluster.log("coordinator.log").contains(fragment) { return .now }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return nil
    }

    func testAStoppedWorkerStaysOnTheHeartbeatPathAndAKilledOneIsLostWithinASecond() async throws {
        let cluster = try ClusterProcesses()
        defer { cluster.stopAndRemove() }
        try cluster.start(workers: 3, model: try TestModel.requirePath(), extraCoordinatorArguments: [
            "--activation-dtype", "f32", "--heartbeat-interval", "0.25", "--heartbeat-timeout", "10",
        ], oneByOne: true)
        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        let reference = try await client.run([try Self.job(tag: "ref")], timeout: .seconds(120))["ref-greedy"]
        XCTAssertEqual(reference?.tokens.count, 40)

        // Stopped between jobs until, after 2 s of silence, the coordinator's ZMTP heartbeat
        // drops the connection itself (which says nothing about the process).
        let middle = cluster.workers[1].processIdentifier
        kill(middle, SIGSTOP)
        let dropped = Self.waitForLine(cluster, "connection dropped after silence", timeout: .seconds(4))
        kill(middle, SIGCONT)
        let afterStop = cluster.log("coordinator.log")
        XCTAssertNotNil(dropped, "the stopped worker's connection was dropped after silence:\n\(afterStop.suffix(3000))")
        let droppedLine = afterStop.split(separator: "\n").first { $0.contains("connection dropped after silence") }
        XCTAssertTrue(droppedLine?.contains("worker=worker-1") ?? false, "\(droppedLine ?? "")")
        XCTAssertFalse(afterStop.contains("connection closed; lost"), "a stopped worker is not lost by its connection:\n\(afterStop.suffix(3000))")
        XCTAssertFalse(afterStop.contains("re-planning"), "no re-plan for a short stop under a 10 s timeout:\n\(afterStop.suffix(3000))")
        let resumed = try await client.run([try Self.job(tag: "resumed")], timeout: .seconds(120))["resumed-greedy"]
        XCTAssertNil(resumed?.error)
        XCTAssertEqual(resumed?.tokens, reference?.tokens, "the resumed worker serves as before")

        // kill -9 of the middle stage mid-job: lost in well under the 10 s timeout.
        let noticed = Locked<Duration?>(nil)
        let fault = Thread {
            let at = ContinuousClock.now
            kill(middle, SIGKILL)
            noticed.withLock { $0 = Self.waitForLine(cluster, "worker-1's connection closed; lost after", timeout: .seconds(15)).map { $0 - at } }
        }
        var injected = false
        let faulty = try await client.run([try Self.job(tag: "kill")], timeout: .seconds(120)) { _, results in
            guard !injected, (results["kill-greedy"]?.tokens.count ?? 0) >= 6 else { return }
            injected = true
            fault.start()
        }["kill-greedy"]
        XCTAssertTrue(injected)
        XCTAssertNil(faulty?.error)
        XCTAssertEqual(faulty?.tokens, reference?.tokens, "the job ends with the fault-free tokens")
        XCTAssertEqual(faulty?.text, reference?.text)
        let deadline = ContinuousClock.now + .seconds(15)
        while noticed.withLock({ $0 }) == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let log = cluster.log("coordinator.log")
        let detection = try XCTUnwrap(noticed.withLock { $0 }, "the kill was never put down to the closed connection:\n\(log.suffix(4000))")
        print("kill -9 of worker-1 under a 10 s heartbeat timeout: lost \(detection) after the kill")
        XCTAssertLessThan(detection, .seconds(1), log.suffix(3000).description)
        let replans = log.split(separator: "\n").filter { $0.contains("re-planning:") }
        XCTAssertEqual(replans.count, 1, "\(replans)")
        XCTAssertTrue(replans.first?.contains("worker worker-1 lost (its connection closed") ?? false, "\(replans)")
    }
}
