import Coordinator
import XCTest

final class StepDeadlineTests: XCTestCase {
    func testBeforeAnyStepTheConfiguredTimeoutApplies() {
        let d = StepDeadline(maximum: 60)
        XCTAssertEqual(d.seconds(rows: 1), 60)
        XCTAssertEqual(d.seconds(rows: 500), 60)
    }

    func testDecodeStepsGetTheMinimumAndBigStepsScaleWithTheirRows() {
        var d = StepDeadline(factor: 8, minimum: 2, maximum: 60)
        for _ in 0..<20 { d.record(rows: 4, seconds: 0.02) }
        XCTAssertEqual(d.seconds(rows: 4), 2, accuracy: 1e-9, "8 x 20 ms is under the minimum")
        // 400 rows = 100x the usual 4: predicted 2 s, deadline 16 s.
        XCTAssertEqual(d.seconds(rows: 400), 16, accuracy: 0.01)
        XCTAssertEqual(d.seconds(rows: 4000), 60, "capped by the configured timeout")
        // Once big steps are measured, they are predicted by their own time per row (prefill is
        // cheaper per row than decode).
        for _ in 0..<20 { d.record(rows: 200, seconds: 0.4) }
        XCTAssertEqual(d.seconds(rows: 400), 8 * 0.8, accuracy: 0.01)
        XCTAssertEqual(d.seconds(rows: 4), 2, accuracy: 1e-9, "small steps keep their own average")
    }

    func testSlowerStepsRaiseTheDeadlineGradually() {
        var d = StepDeadline(factor: 8, minimum: 2, maximum: 60)
        for _ in 0..<20 { d.record(rows: 4, seconds: 0.02) }
        d.record(rows: 4, seconds: 2.0)  // one slow step (a replay, a loaded machine)
        let after = d.seconds(rows: 4)
        XCTAssertGreaterThan(after, 2)
        XCTAssertLessThan(after, 8 * 2.0, "one step moves the average by a fifth")
        for _ in 0..<40 { d.record(rows: 4, seconds: 0.5) }
        XCTAssertEqual(d.seconds(rows: 4), 4, accuracy: 0.05)
        d.record(rows: 4, seconds: -1)
        d.record(rows: 4, seconds: .nan)
        XCTAssertEqual(d.seconds(rows: 4), 4, accuracy: 0.05, "nonsense times are ignored")
    }

    /// Found on a 70B-wide stage capped at 0.4 CPU: a lane's decode step waited in the worker behind
    /// another lane's 150-row prefill (~25 s), its deadline (8 x its own 0.67 s) ran out, and every
    /// timeout re-planned and replayed all jobs, so the cluster never finished a job.
    func testAStepSentBehindOthersGetsTheirTimeToo() {
        var d = StepDeadline(factor: 8, minimum: 2, maximum: 600)
        for _ in 0..<20 { d.record(rows: 4, seconds: 0.6) }
        for _ in 0..<20 { d.record(rows: 150, seconds: 22.5) }  // 0.15 s per row
        let prefill = StepDeadline.InFlight(epoch: 3, step: 7)
        XCTAssertEqual(d.start(prefill, rows: 150), 8 * 22.5, accuracy: 0.01)
        let decode = StepDeadline.InFlight(epoch: 3, step: 8)
        XCTAssertEqual(d.start(decode, rows: 4), 8 * (0.6 + 22.5), accuracy: 0.01,
                       "the decode step may wait for the whole prefill sent before it")
        XCTAssertEqual(d.inFlight.count, 2)
        d.end(prefill)
        let next = StepDeadline.InFlight(epoch: 3, step: 9)
        XCTAssertEqual(d.start(next, rows: 4), 8 * (0.6 + 0.6), accuracy: 0.01, "only the decode step is still ahead")
        d.end(decode)
        d.end(next)
        XCTAssertTrue(d.inFlight.isEmpty)
        XCTAssertEqual(d.start(StepDeadline.InFlight(epoch: 4, step: 1), rows: 4), 8 * 0.6, accuracy: 0.01)
        XCTAssertEqual(d.start(StepDeadline.InFlight(epoch: 4, step: 2), rows: 100_000), 600, "still capped by the timeout")
    }
}
