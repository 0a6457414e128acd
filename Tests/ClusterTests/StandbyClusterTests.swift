import CaravanClient
import CaravanCore
import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Standby copies (issue 13) on real processes: three workers pulling their layers keep copies of
/// their neighbours' layers; after kill -9 of the middle worker mid-job, the survivors take its
/// layers from their layer caches (nothing pulled over the network) and every job ends with the
/// tokens of the fault-free run; the KV rows the middle stage had mirrored to them let the jobs
/// resume where they stopped instead of replaying from position 0.
final class StandbyClusterTests: XCTestCase {

    private static func jobs(tag: String) throws -> [Caravan_V1_JobSubmit] {
        let p = try EngineReference.load().greedy.map(\.prompt_ids)
        return [
            JobClient.submit(prompt: p[0], sampling: .seeded(0, seed: 1, tokens: 40), id: "\(tag)-greedy"),
            JobClient.submit(prompt: p[1], sampling: .seeded(0.9, seed: 77, tokens: 40), id: "\(tag)-seeded"),
        ]
    }

    /// Every `downloaded_bytes` of a "layers pulled" line of `log`.
    private static func stagePulls(_ log: Substring) -> [Int] {
        log.split(separator: "\n").filter { $0.contains("layers pulled") }.compactMap { line in
            line.firstMatch(of: /\sdownloaded_bytes=([0-9]+)/).flatMap { Int($0.1) }
        }
    }

    func testAfterKillingTheMiddleWorkerItsLayersComeFromStandbyCopiesWithoutAPull() async throws {
        // The standby pull starts 0.5 s after a stage serves (not the daemon's 5 s): the reference
        // run below still goes first, and the copies are held sooner.
        let pulling = try PullingCluster(workerArguments: ["--standby-budget-mib", "1024", "--standby-start-delay", "0.5",
                                                                    "--mirror-flush-interval", "0"])
        defer { pulling.stop() }
        let cluster = pulling.cluster
        // The fault-free run, while the standby copies are pulled in the background.
        let reference = try await pulling.run(Self.jobs, tag: "ref")

        // Wait until the coordinator hears that every copy is held.
        let admin = try CaravanClient(endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey, keys: try cluster.adminKeys())
        var report = try await admin.clusterStatus()
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let workers = report.workers
            if workers.count == 3, workers.allSatisfy({ !$0.standbyRanges.isEmpty && $0.standbyHeldBytes == $0.standbyBytes }) { break }
            try await Task.sleep(for: .milliseconds(200))
            report = try await admin.clusterStatus()
        }
        let standby = Dictionary(uniqueKeysWithValues: report.workers.map { ($0.workerID, $0) })
        for id in ["worker-0", "worker-1", "worker-2"] {
            let w = try XCTUnwrap(standby[id], "\(id) in the status")
            XCTAssertFalse(w.standbyRanges.isEmpty, "\(id) keeps standby copies: \(report.workers)")
            XCTAssertGreaterThan(w.standbyBytes, 0)
            XCTAssertEqual(w.standbyHeldBytes, w.standbyBytes, "\(id) holds its copies")
            XCTAssertEqual(w.standbyBudgetBytes, 1024 << 20)
        }
        let layers = try XCTUnwrap(standby["worker-1"]?.layers)
        XCTAssertTrue(standby["worker-0"]!.standbyRanges.contains { $0.start == layers.start }
            || standby["worker-2"]!.standbyRanges.contains { $0.end == layers.end },
            "the middle stage's neighbours hold its layers: \(report.workers.map { "\($0.workerID) \($0.standbyRanges)" })")
        // `caravanctl status` shows them.
        let status = try CLIRun.run(cluster.binaries.appendingPathComponent("caravanctl"), [
            "status", "--clients", cluster.clientsEndpoint, "--coordinator-key=\(cluster.coordinatorKey)", "--key-file", cluster.adminKeyFile,
        ], in: cluster.directory, timeout: 30)
        XCTAssertEqual(status.status, 0, status.stderr)
        let table = status.stdout
        XCTAssertTrue(table.contains("worker-1 standby copies ["), table)
        XCTAssertTrue(table.contains("held (budget 1.0 GiB)"), table)

        let survivorLogs = ["worker-0.log", "worker-2.log"]
        var logLengths: [String: Int] = [:]
        let middle = cluster.workers[1].processIdentifier
        let faulty = try await pulling.run(Self.jobs, tag: "kill") {
            for name in survivorLogs { logLengths[name] = cluster.log(name).count }
            kill(middle, SIGKILL)
        }
        PullingCluster.assertSame(faulty, as: reference)

        let coordinator = pulling.coordinatorLog()
        let plans = PullingCluster.planLines(coordinator)
        XCTAssertEqual(plans.count, 2, "\(plans)")
        XCTAssertTrue(plans.last?.contains("purpose=recovery") ?? false, "\(plans)")
        XCTAssertTrue(plans.last?.contains("pull_bytes=0") ?? false, "the recovery plan moves no byte: \(plans)")
        // Mirrored KV: the lost stage had streamed the keys and values of its layers to the
        // survivors keeping their copies, so every stage of the new plan held the committed
        // positions and the jobs resumed there. At most the tail one step had not mirrored yet
        // (a position per job, in the lost layers) is recomputed.
        XCTAssertTrue(coordinator.contains("sequences resume where every stage holds them"), String(coordinator.suffix(6000)))
        let replays = coordinator.split(separator: "\n").filter { $0.contains("replay: ") }
        let recomputed = replays.compactMap { $0.firstMatch(of: /replay: ([0-9]+) layer-positions recomputed/).flatMap { Int($0.1) } }
        let resumed = replays.compactMap { $0.firstMatch(of: /resumed_after=([0-9]+)/).flatMap { Int($0.1) } }
        XCTAssertFalse(recomputed.isEmpty, "\(replays)")
        XCTAssertGreaterThan(resumed.reduce(0, +), 0, "\(replays)")
        XCTAssertLessThanOrEqual(recomputed.reduce(0, +), 2 * layers.count, "only an uncommitted tail: \(replays)")
        // Both survivors loaded their new stages from their layer caches: 0 bytes downloaded.
        for name in survivorLogs {
            let after = cluster.log(name).dropFirst(logLengths[name] ?? 0)
            let pulls = Self.stagePulls(after)
            XCTAssertFalse(pulls.isEmpty, "\(name) loaded a stage after the kill: \(after.suffix(3000))")
            XCTAssertEqual(pulls.filter { $0 != 0 }, [], "\(name) pulled nothing over the network: \(after.suffix(3000))")
        }
    }
}
