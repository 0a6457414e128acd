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
        PullingCluster.planLines(log).map { line in
            var stages: [String: (Int, Int)] = [:]
            for m in String(line).matches(of: /(worker-[0-9]+)\[([0-9]+), ([0-9]+)\)/) {
                stages[String(m.1)] = (Int(m.2)!, Int(m.3)!)
            }
            return stages
        }
    }

    func testKillingTheMiddleWorkerKeepsBothSurvivorsAndTheirLayersInOneReplan() async throws {
        // A join-settle time of 3 s (not the daemon's 5 s): the wait below past it is shorter, and
        // the fault's gap (at most ~2 s before the re-plan) still falls within it.
        let pulling = try PullingCluster(coordinatorArguments: ["--join-settle", "3"])
        defer { pulling.stop() }
        let cluster = pulling.cluster
        let reference = try await pulling.run(Self.jobs, tag: "ref")
        let before = Self.plans(cluster.log("coordinator.log"))
        // Past the join-settle time (3 s) since the workers loaded their stages: a gap from those
        // loads no longer counts (it would have every survivor counted as unsteady, and then all
        // of them would be used again).
        try await Task.sleep(for: .seconds(3.5))
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
        let faulty = try await pulling.run(Self.jobs, tag: "kill", timeout: .seconds(180)) { fault.start() }
        PullingCluster.assertSame(faulty, as: reference)

        let log = pulling.coordinatorLog()
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
