import Coordinator
import XCTest

/// ``KVAdmission`` without a network: room per job, first-come order, release, refusal.
final class KVAdmissionTests: XCTestCase {
    func testCostIsTheCacheAWorkerGrowsToAtMost() {
        let a = KVAdmission(contextTokens: 512, batchSequences: 2)
        XCTAssertEqual(a.budget, 1024)
        XCTAssertEqual(a.cost(promptTokens: 3, maxNewTokens: 4), 64, "the first allocation is 64 positions")
        XCTAssertEqual(a.cost(promptTokens: 100, maxNewTokens: 50), 300, "doubling can overshoot up to 2x")
        XCTAssertEqual(a.cost(promptTokens: 460, maxNewTokens: 40), 512, "never beyond the context")
        XCTAssertEqual(a.cost(promptTokens: .max, maxNewTokens: .max), 512, "overflow-safe")
        XCTAssertEqual(KVAdmission(contextTokens: .max, batchSequences: .max).budget, .max)
    }

    func testJobsWaitInOrderAndStartAsRoomIsFreed() {
        var a = KVAdmission(contextTokens: 512, batchSequences: 2)
        XCTAssertEqual(a.request("a", cost: 512), .start)
        XCTAssertEqual(a.request("b", cost: 512), .start)
        XCTAssertEqual(a.request("c", cost: 512), .queued(position: 1))
        XCTAssertEqual(a.request("d", cost: 64), .queued(position: 2), "a small job does not pass a waiting big one")
        XCTAssertEqual(a.request("c", cost: 512), .queued(position: 1), "asking again keeps the place")
        XCTAssertEqual(a.inUse, 1024)
        XCTAssertEqual(a.release("a"), ["c"])
        XCTAssertEqual(a.position(of: "d"), 1)
        XCTAssertEqual(a.release("b"), ["d"])
        XCTAssertTrue(a.isRunning("c") && a.isRunning("d"))
        XCTAssertEqual(a.inUse, 576)
        XCTAssertEqual(a.request("c", cost: 512), .start, "a replayed job keeps its room")
        XCTAssertEqual(a.release("c"), [])
        XCTAssertEqual(a.release("d"), [])
        XCTAssertEqual(a.inUse, 0)
    }

    func testAWaitingJobThatEndsLeavesTheQueueAndAnImpossibleOneIsRefused() {
        var a = KVAdmission(contextTokens: 100, batchSequences: 1)
        XCTAssertEqual(a.request("a", cost: 100), .start)
        XCTAssertEqual(a.request("b", cost: 100), .queued(position: 1))
        XCTAssertEqual(a.release("b"), [], "cancelled while waiting")
        XCTAssertNil(a.position(of: "b"))
        guard case .refused(let reason) = a.request("huge", cost: 101) else { return XCTFail("not refused") }
        XCTAssertTrue(reason.contains("never"), reason)
    }
}
