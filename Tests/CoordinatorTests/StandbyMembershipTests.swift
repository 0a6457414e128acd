import CaravanCore
import CaravanWire
import Coordinator
import Planning
import XCTest

/// Standby copies in the coordinator's state (issue 13): the budget comes with the registration,
/// the placement of the serving plan is recorded per worker, and what they hold follows their
/// cache reports.
final class StandbyMembershipTests: XCTestCase {
    private let sha = String(repeating: "d", count: 64)
    private let template = AssignmentTemplate(
        modelName: "m.gguf", modelSHA256: String(repeating: "d", count: 64), modelSize: 100, modelLayerCount: 12,
        resultAddress: "tcp://coord:9", activationDType: .f16, maxContextTokens: 256, maxBatchSequences: 4, maxBatchTokens: 512)

    private func peer(_ n: UInt8) -> PeerID { PeerID([0, n]) }

    private func serving() -> Membership {
        var m = Membership(expectedWorkers: 3, modelSHA256: sha, heartbeatTimeout: 2000)
        for n: UInt8 in 1...3 {
            _ = m.register(peer: peer(n), workerID: "w\(n)", dataAddress: "tcp://w\(n):1", memoryBytes: 1 << 30, speed: 1,
                           heldModels: [], standbyBudgetBytes: UInt64(n) << 30, now: 0)
        }
        let plan = PipelinePlan(stages: (0..<3).map { i in
            PlannedStage(workerID: "w\(i + 1)", layers: LayerRange(i * 4, i * 4 + 4)!, memoryBytes: 1)
        })
        _ = m.planned(plan, template: template, now: 0)
        for n: UInt8 in 1...3 { _ = m.assignmentReady(peer: peer(n), epoch: 1, error: nil, now: 10) }
        return m
    }

    func testThePlacementOfTheServingPlanIsRecordedAndItsHoldingsFollowTheCacheReports() {
        var m = serving()
        XCTAssertEqual(m.members.map(\.standbyBudgetBytes), [1 << 30, 2 << 30, 3 << 30])
        let copies = StandbyCopies(ranges: [LayerRange(0, 4)!, LayerRange(8, 12)!], rangeBytes: [5, 7])
        m.placedStandby(["w2": copies], epoch: 2)
        XCTAssertNil(m.members[1].standby, "another epoch's placement is ignored")
        m.placedStandby(["w2": copies], epoch: 1)
        XCTAssertEqual(m.members.map(\.standby), [nil, copies, nil])
        XCTAssertEqual(copies.heldBytes(m.members[1].holdings, layerCount: 12), 0)
        // w2's cache reports the first range, then the second.
        m.heartbeat(peer: peer(2), stepsRun: 0, recentStepMs: 0, recentRowsPerStep: 0, freeMemoryBytes: 0,
                    cachedLayers: [CachedLayers(modelSHA256: sha, layers: Array(0..<8), embedding: true, output: false)], now: 20)
        XCTAssertEqual(copies.heldBytes(m.members[1].holdings, layerCount: 12), 5)
        m.heartbeat(peer: peer(2), stepsRun: 0, recentStepMs: 0, recentRowsPerStep: 0, freeMemoryBytes: 0,
                    cachedLayers: [CachedLayers(modelSHA256: sha, layers: Array(8..<12), embedding: false, output: true)], now: 30)
        XCTAssertEqual(copies.heldBytes(m.members[1].holdings, layerCount: 12), 12)
    }
}
