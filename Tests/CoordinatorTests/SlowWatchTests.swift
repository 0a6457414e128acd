import Coordinator
import Planning
import XCTest

/// No rebalance on a transient; a rebalance only when its gain over the horizon pays for its pulls.
final class SlowWatchTests: XCTestCase {
    /// A candidate re-plan: the bottleneck 20 ms -> 10 ms; `steps` run by the slowest stage.
    private func candidate(steps: UInt64, moveSeconds: Double = 4) -> Rebalancer.Decision {
        Rebalancer.Decision(reason: "worker w2 is slow", currentMs: 20, predictedMs: 10, moveBytes: 1 << 30,
                            moveSeconds: moveSeconds, slowestSteps: steps)
    }

    /// Checks every 250 ms while the slowest stage runs a 20 ms step every `every` ms; `slow`
    /// says whether the bottleneck shows at the check. Returns the time of the first decision.
    private func run(_ watch: inout SlowWatch, for ms: UInt64, every: UInt64 = 20, epoch: UInt64 = 1, moveSeconds: Double = 4,
                     slow: (UInt64) -> Bool) -> UInt64? {
        var t: UInt64 = 0
        while t < ms {
            t += 250
            if watch.observe(slow(t) ? candidate(steps: t / every, moveSeconds: moveSeconds) : nil, epoch: epoch, now: t) != nil {
                return t
            }
        }
        return nil
    }

    func testATransientUnderContentionIsNotASlowWorker() {
        var watch = SlowWatch(sustainedSteps: 32, horizonSeconds: 600)
        // Slow for 500 ms of every 1.5 s (25 steps at most in a row): never sustained.
        XCTAssertNil(run(&watch, for: 60_000) { t in t % 1500 < 500 })
    }

    func testASustainedBottleneckThatPaysRebalancesOnceItHasLastedTheWindow() throws {
        var watch = SlowWatch(sustainedSteps: 32, horizonSeconds: 600)
        let at = try XCTUnwrap(run(&watch, for: 10_000) { _ in true })
        // Steps counted from the first check (250 ms, step 12): 32 more by 250 + 32 x 20 ms.
        XCTAssertGreaterThanOrEqual(at, 250 + 32 * 20)
        XCTAssertLessThan(at, 250 + 32 * 20 + 250)
        XCTAssertNil(watch.since, "the count starts again after a decision")
    }

    func testAGainSmallerThanTheMovementCostDoesNotRebalance() {
        var watch = SlowWatch(sustainedSteps: 32, horizonSeconds: 600)
        // Busy all the time: halving the bottleneck saves 300 s over 600 s; moving takes 400 s.
        XCTAssertNil(run(&watch, for: 30_000, moveSeconds: 400) { _ in true })
        // The same at 10 % load (a step every 200 ms) saves 30 s: moving 4 s pays, 40 s does not.
        var light = SlowWatch(sustainedSteps: 32, horizonSeconds: 600)
        XCTAssertNotNil(run(&light, for: 30_000, every: 200, moveSeconds: 4) { _ in true })
        var heavy = SlowWatch(sustainedSteps: 32, horizonSeconds: 600)
        XCTAssertNil(run(&heavy, for: 30_000, every: 200, moveSeconds: 40) { _ in true })
    }

    func testANewPlanEpochStartsTheCountAgain() {
        var watch = SlowWatch(sustainedSteps: 32, horizonSeconds: 600)
        XCTAssertNil(watch.observe(candidate(steps: 0), epoch: 1, now: 0))
        XCTAssertNil(watch.observe(candidate(steps: 31), epoch: 1, now: 620))
        XCTAssertNil(watch.observe(candidate(steps: 40), epoch: 2, now: 800), "another plan: counting again")
        XCTAssertNil(watch.observe(candidate(steps: 71), epoch: 2, now: 1420))
        XCTAssertNotNil(watch.observe(candidate(steps: 72), epoch: 2, now: 1440))
    }
}
