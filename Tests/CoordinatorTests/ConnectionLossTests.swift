import CaravanCore
import Coordinator
import Planning
import XCTest

/// Membership when a worker's control connection closes by its own end (its process ended): the
/// worker is lost after the connection grace, long before the heartbeat timeout, unless it
/// connects again; the heartbeat timeout still covers everything else.
final class ConnectionLossTests: XCTestCase {
    private let sha = String(repeating: "c", count: 64)
    private let template = AssignmentTemplate(
        modelName: "m.gguf", modelSHA256: String(repeating: "c", count: 64), modelSize: 100, modelLayerCount: 12,
        resultAddress: "tcp://coord:9", activationDType: .f16, maxContextTokens: 256, maxBatchSequences: 4, maxBatchTokens: 512)

    private func peer(_ n: UInt8) -> PeerID { PeerID([0, n]) }

    /// Three workers serving epoch 1 (w1 [0, 4), w2 [4, 8), w3 [8, 12)) at time 0, a heartbeat
    /// timeout of 10 s and a connection grace of 250 ms (or `grace`).
    private func serving(grace: UInt64? = 250) -> Membership {
        var m = Membership(expectedWorkers: 3, modelSHA256: sha, heartbeatTimeout: 10_000, connectionGrace: grace)
        for n: UInt8 in 1...3 {
            _ = m.register(peer: peer(n), workerID: "w\(n)", dataAddress: "tcp://w\(n):1", memoryBytes: 1 << 30, speed: 1,
                           heldModels: [sha], now: 0)
        }
        _ = m.planned(PipelinePlan(stages: (1...3).map { n in
            PlannedStage(workerID: "w\(n)", layers: LayerRange(4 * (n - 1), 4 * n)!, memoryBytes: 1)
        }), template: template)
        for n: UInt8 in 1...3 { _ = m.assignmentReady(peer: peer(n), epoch: 1, error: nil, now: 0) }
        return m
    }

    private func plannedWorkers(_ directives: [Membership.Directive]) -> [String]? {
        for d in directives { if case .plan(let workers) = d { return workers.map(\.workerID) } }
        return nil
    }

    func testAWorkerWhoseConnectionClosedIsLostAfterTheGraceNotTheHeartbeatTimeout() {
        var m = serving()
        for n: UInt8 in 1...3 { m.touch(peer(n), now: 900) }
        XCTAssertEqual(m.connectionClosed(peer: peer(2), now: 1000), "w2")
        XCTAssertEqual(m.expire(now: 1100).losses, [], "within the grace")
        XCTAssertEqual(m.connectionClosed(peer: peer(2), now: 1200), "w2", "a second report keeps the first time")
        let expiry = m.expire(now: 1250)
        XCTAssertEqual(expiry.losses.map(\.member.workerID), ["w2"])
        XCTAssertEqual(expiry.losses.first?.cause, .connectionClosed)
        XCTAssertEqual(expiry.losses.first?.closedMs, 250)
        XCTAssertEqual(expiry.losses.first?.silentMs, 350)
        XCTAssertEqual(expiry.directives.first, .replan(reason: "worker w2 lost (its connection closed 250 ms ago and it did not connect again)"))
        XCTAssertEqual(plannedWorkers(expiry.directives), ["w1", "w3"], "one re-plan over the survivors")
        XCTAssertEqual(m.lostMembers.map(\.workerID), ["w2"])
        XCTAssertFalse(m.isMember(peer(2)))
    }

    func testAWorkerThatConnectsAgainWithinTheGraceStays() {
        var m = serving()
        XCTAssertEqual(m.connectionClosed(peer: peer(2), now: 1000), "w2")
        let opened = m.connectionOpened(peer: peer(2), now: 1100)
        XCTAssertEqual(opened?.workerID, "w2")
        XCTAssertEqual(opened?.closedMs, 100)
        XCTAssertNil(m.connectionOpened(peer: peer(2), now: 1150), "an open connection opening again is nothing")
        m.touch(peer(2), now: 1200)
        XCTAssertEqual(m.expire(now: 5000).losses, [])
        XCTAssertTrue(m.isMember(peer(2)))
    }

    func testMessagesAfterTheCloseDoNotKeepTheWorker() {
        // Its last heartbeats may be read after the close (they were queued): only a new
        // connection counts as coming back.
        var m = serving()
        _ = m.connectionClosed(peer: peer(2), now: 1000)
        _ = m.heartbeat(peer: peer(2), stepsRun: 1, recentStepMs: 1, recentRowsPerStep: 1, freeMemoryBytes: 1, now: 1001)
        XCTAssertEqual(m.expire(now: 1300).losses.map(\.member.workerID), ["w2"])
    }

    func testClosuresOfStrangersOrWithoutAGraceAreNothing() {
        var m = serving()
        XCTAssertNil(m.connectionClosed(peer: peer(9), now: 1000), "not a worker")
        XCTAssertNil(m.connectionOpened(peer: peer(9), now: 1000))
        var off = serving(grace: nil)
        XCTAssertNil(off.connectionClosed(peer: peer(2), now: 1000), "closures left to the heartbeat timeout")
        for n: UInt8 in 1...3 { off.touch(peer(n), now: 5000) }
        XCTAssertEqual(off.expire(now: 6000).losses, [])
        // The heartbeat timeout still applies to everyone.
        off.touch(peer(1), now: 14_000)
        off.touch(peer(3), now: 14_000)
        let expiry = off.expire(now: 15_001)
        XCTAssertEqual(expiry.losses.map(\.member.workerID), ["w2"])
        XCTAssertEqual(expiry.losses.first?.cause, .heartbeatTimeout)
        XCTAssertEqual(expiry.directives.first, .replan(reason: "worker w2 lost (no heartbeat for 10001 ms)"))
    }

    func testAReplanWithinTheGraceLeavesTheClosedWorkerOut() {
        var m = serving()
        for n: UInt8 in 1...3 { m.touch(peer(n), now: 990) }
        _ = m.connectionClosed(peer: peer(2), now: 1000)
        // A step failed (the same fault, seen first by the pipeline) before the grace ran out.
        XCTAssertEqual(plannedWorkers(m.replan("a step of epoch 1 failed", now: 1050)), ["w1", "w3"])
    }
}
