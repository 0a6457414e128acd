import CaravanCore
import CaravanWire
import CaravanctlCLI
import XCTest

/// Standby assignments and status lines (issue 13).
final class StandbyWireTests: XCTestCase {
    func testStandbyAssignmentRoundTripsAndRefusesRangesBeyondTheModel() throws {
        let a = StandbyAssignment(planEpoch: 4, modelName: "m.gguf", modelSHA256: String(repeating: "e", count: 64),
                                  modelSize: 1000, modelLayerCount: 30, ranges: [LayerRange(0, 4)!, LayerRange(20, 30)!])
        XCTAssertEqual(try StandbyAssignment(wire: a.wire), a)
        XCTAssertEqual(a.pull(LayerRange(20, 30)!).layers, LayerRange(20, 30)!)
        var beyond = a.wire
        beyond.ranges[1].layerEnd = 31
        XCTAssertThrowsError(try StandbyAssignment(wire: beyond))
        var noCount = a.wire
        noCount.model.layerCount = 0
        XCTAssertThrowsError(try StandbyAssignment(wire: noCount))
    }

    func testStatusShowsStandbyCopiesHeldAndTheBudget() {
        var w = WorkerReport(workerID: "w2")
        XCTAssertNil(AdminTables.standby(w), "no copies, no budget: no line")
        w.standbyBudgetBytes = 2 << 30
        XCTAssertEqual(AdminTables.standby(w), "w2 standby copies: none (budget 2.0 GiB)")
        w.standbyRanges = [LayerRange(0, 2)!, LayerRange(4, 6)!]
        w.standbyBytes = 3 << 30
        w.standbyHeldBytes = 1 << 30
        XCTAssertEqual(AdminTables.standby(w), "w2 standby copies [0, 2) [4, 6): 1.0 GiB of 3.0 GiB held (budget 2.0 GiB)")
        let back = WorkerReport(wire: Caravan_V1_WorkerStatus(w))
        XCTAssertEqual(back.standbyRanges, w.standbyRanges)
        XCTAssertEqual(back.standbyBytes, w.standbyBytes)
        XCTAssertEqual(back.standbyHeldBytes, w.standbyHeldBytes)
        XCTAssertEqual(back.standbyBudgetBytes, w.standbyBudgetBytes)
    }
}
