import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Issue 13 on real processes: three workers pulling their layers, the last one starved of CPU
/// for a moment (stopped 0.9 s, as under three workers on two cores), then kill -9 of the middle
/// one mid-job. The re-plan keeps both survivors, moves none of the layers they held, happens
/// once, and every job ends with the tokens of the fault-free run.
final class SurvivorReplanClusterTests: XCTestCase {

    private static func jobs(tag: String) throws -> [Caravan_V1_JobSubmit] {
        let p = try EngineReference.load().greedy.map(\.prompt_ids)
        return [
            JobClient.submit(prompt: p[0], sampling: .seeded(0, seed: 1, tokens: 48), id: "\(tag)-greedy-a"),
            JobClient.submit(prompt: p[1], sampling: .seeded(0, seed: 1, tokens: 48), id: "\(tag)-greedy-b"),
            JobClient.submit(prompt: p[2], sampling: .seeded(0.9, seed: 77, tokens: 48), id: "\(tag)-seeded"),
        ]
    }

    /// Every `plan` line of the coordinator's log: worker id -> layers (start, end).
    static func plans(_ log: String) -> [[String: (Int, Int)]] {
        log.split(separator: "\n").filter { $0.hasSuffix("] plan") }.map { line in
            var stages: [String: (Int, Int)] = [:]
            for m in String(line).matches(of: /(worker-[0-9]+)\[([0-9]+), ([0-9]+)\)/) {
                stages[String(m.1)] = (Int(m.2)!, Int(m.3)!)
            }
            return stages
        }
    }

    func testKillingTheMiddleWorkerKeepsBothSurvivorsAndTheirLayersInOneReplan() async throws {
        let model = try TestModel.requirePath()
        let caches = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-survivor-caches-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: caches) }
        let cluster = try ClusterProcesses()
        defer {
            cluster.stop()
            try? FileManager.default.removeItem(at: cluster.directory)
        }
        try cluster.start(workers: 3, model: model, extraCoordinatorArguments: [
            "--activation-dtype", "f32", "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1.5",
        ], extraWorkerArguments: { i in ["--cache-dir", caches.appendingPathComponent("w\(i)").path] },
           withoutModel: [0, 1, 2], oneByOne: true)

        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        func strip(_ r: [String: JobClient.Result], _ tag: String) -> [String: JobClient.Result] {
            Dictionary(uniqueKeysWithValues: r.map { (String($0.key.dropFirst(tag.count + 1)), $0.value) })
        }
        let reference = strip(try await client.run(try Self.jobs(tag: "ref"), timeout: .seconds(120)), "ref")
        let before = Self.plans(cluster.log("coordinator.log"))
        // Past the join-settle time (5 s) since the workers loaded their stages: a gap from those
        // loads no longer counts (it would have every survivor counted as unsteady, and then all
        // of them would be used again).
        try await Task.sleep(for: .seconds(6))
        XCTAssertEqual(before.count, 1, "one plan before the fault")
        let last = cluster.workers[2].processIdentifier
        let middle = cluster.workers[1].processIdentifier
        let fault = Thread {
            // The last worker gets no CPU for 0.9 s (shorter than the 1.5 s heartbeat timeout),
            // then the middle one dies.
            kill(last, SIGSTOP)
            Thread.sleep(forTimeInterval: 0.9)
            kill(last, SIGCONT)
            Thread.sleep(forTimeInterval: 0.3)
            kill(middle, SIGKILL)
        }
        var injected = false
        let faulty = strip(try await client.run(try Self.jobs(tag: "kill"), timeout: .seconds(180)) { _, results in
            guard !injected, results.values.reduce(0, { $0 + $1.tokens.count }) >= 12 else { return }
            injected = true
            fault.start()
        }, "kill")
        XCTAssertTrue(injected)
        for (id, expected) in reference {
            XCTAssertNil(expected.error, "reference \(id)")
            XCTAssertNil(faulty[id]?.error, "job \(id) failed: \(faulty[id]?.error ?? "")")
            XCTAssertEqual(faulty[id]?.tokens, expected.tokens, "job \(id) lost, doubled or changed tokens")
            XCTAssertEqual(faulty[id]?.text, expected.text, "job \(id) text differs")
        }

        let log = cluster.log("coordinator.log")
        if ProcessInfo.processInfo.environment["CARAVAN_TEST_PRINT_LOGS"] != nil { print(log) }
        XCTAssertTrue(log.contains(/worker=worker-2/) && log.contains("made_by=worker"),
                      "the stop made a heartbeat gap of the worker's own: \(log.suffix(4000))")
        let replans = log.split(separator: "\n").filter { $0.contains("re-planning:") }
        XCTAssertEqual(replans.count, 1, "one fault, one re-plan: \(replans)")
        XCTAssertTrue(replans.first?.contains("worker-1 lost") ?? false, "\(replans)")
        let plans = Self.plans(log)
        XCTAssertEqual(plans.count, 2, "\(log.suffix(4000))")
        guard let old = plans.first, let new = plans.last, plans.count == 2 else { return }
        XCTAssertEqual(Set(new.keys), ["worker-0", "worker-2"], "the re-plan keeps both survivors")
        for survivor in ["worker-0", "worker-2"] {
            guard let held = old[survivor], let now = new[survivor] else { continue }
            XCTAssertTrue(now.0 <= held.0 && held.1 <= now.1,
                          "\(survivor) keeps the layers it held: \(held) -> \(now)")
        }
    }
}
