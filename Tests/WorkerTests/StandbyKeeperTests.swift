import CaravanCore
import CaravanWire
import Logging
@testable import Worker
import XCTest

/// The standby keeper on its own, with a pull that only records what it was asked for.
final class StandbyKeeperTests: XCTestCase {
    /// The coordinator sends an assignment again when a worker registers again: the same one must
    /// neither restart nor repeat the pull (copies held would be read back again), a different one
    /// replaces it.
    func testTheSameAssignmentAgainDoesNotPullAgainAndADifferentOneDoes() async throws {
        let pulls = LockedValue<[LayerRange]>([])
        let keeper = StandbyKeeper(budget: 1 << 30, logger: Logger(label: "standby-test"), slices: 1, slicePause: .zero,
                                   startDelay: .zero, pull: { p, _ in
                                       pulls.withLock { $0.append(p.layers) }
                                       return LayerFetcher.Report(path: "", neededBytes: 1, downloadedBytes: 1, reusedBytes: 0, retries: 0)
                                   }, pulled: {})
        let a = StandbyAssignment(planEpoch: 3, modelName: "m.gguf", modelSHA256: String(repeating: "a", count: 64),
                                  modelSize: 1000, modelLayerCount: 6, ranges: [LayerRange(2, 4)!])
        keeper.assign(a)
        keeper.serving(epoch: 3)
        try await waitUntil { pulls.withLock { $0.count } == 1 }
        keeper.assign(a)
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(pulls.withLock { $0 }, [LayerRange(2, 4)!], "the same assignment again pulls nothing")
        var b = a
        b.ranges = [LayerRange(4, 6)!]
        keeper.assign(b)
        try await waitUntil { pulls.withLock { $0.count } == 2 }
        XCTAssertEqual(pulls.withLock { $0 }, [LayerRange(2, 4)!, LayerRange(4, 6)!])
    }

    /// Before it pulls an assignment's copies the keeper brings the cache within its budget
    /// (copies of earlier plans beyond it are released) and reports the cache again when that
    /// released anything.
    func testAnAssignmentTrimsTheCacheBeforeItsPull() async throws {
        let events = LockedValue<[String]>([])
        let keeper = StandbyKeeper(budget: 5_000, logger: Logger(label: "standby-test"), slices: 1, slicePause: .zero,
                                   startDelay: .zero, trim: { a, budget in
                                       events.withLock { $0.append("trim \(a.ranges) within \(budget)") }
                                       return 123
                                   }, pull: { p, _ in
                                       events.withLock { $0.append("pull \(p.layers)") }
                                       return LayerFetcher.Report(path: "", neededBytes: 1, downloadedBytes: 1, reusedBytes: 0, retries: 0)
                                   }, pulled: { events.withLock { $0.append("report") } })
        keeper.assign(StandbyAssignment(planEpoch: 4, modelName: "m.gguf", modelSHA256: String(repeating: "a", count: 64),
                                        modelSize: 1000, modelLayerCount: 6, ranges: [LayerRange(2, 4)!]))
        keeper.serving(epoch: 4)
        try await waitUntil { events.withLock { $0.count } >= 4 }
        XCTAssertEqual(events.withLock { Array($0.prefix(4)) }, ["trim [[2, 4)] within 5000", "report", "pull [2, 4)", "report"])
    }

    private func waitUntil(_ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            guard ContinuousClock.now < deadline else { return XCTFail("timed out", file: file, line: line) }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
