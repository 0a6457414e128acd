import CaravanCore
import CaravanWire
import ClusterSupport
import Planning
import XCTest

/// The planner's values on the wire: a model shape a client sends, a paper prediction it prints.
final class PlanningWireTests: XCTestCase {
    private let llama70b = ModelArchitecture.presets["llama3-70b"]!

    func testShapeRoundTripsThroughTheWireAndBadShapesAreRefused() throws {
        let facts = try ModelFacts(architecture: llama70b, quantization: .q4_0)
        let back = try ModelFacts(shape: facts.shape(name: "x"))
        XCTAssertEqual(back, facts)
        XCTAssertThrowsError(try ModelFacts(shape: Caravan_V1_ModelShape()))
        var zero = facts.shape(name: "x")
        zero.layerBytes[3] = 0
        XCTAssertThrowsError(try ModelFacts(shape: zero))
        var huge = facts.shape(name: "x")
        huge.outputBytes = 1 << 60
        XCTAssertThrowsError(try ModelFacts(shape: huge))
    }

    func testAPaperPredictionBecomesAPreviewWithEveryStage() throws {
        let facts = try ModelFacts(architecture: llama70b, quantization: .q4_k_m)
        let workers = (1...4).map { PaperWorker(id: "m\($0)", memoryBytes: 32 << 30) }
        let cost = TokenCostModel(layerMs: 10, referenceLayerBytes: Double(facts.layerBytes[10]), hopMs: 0.5)
        let p = try PaperPlanner.predict(model: facts, workers: workers, cost: cost, contextTokens: 2048, batchSequences: 4)
        let preview = p.preview(model: "70b", workers: workers, contextTokens: 2048, batchSequences: 4)
        XCTAssertTrue(preview.feasible)
        XCTAssertEqual(preview.modelName, "70b")
        XCTAssertEqual(preview.maxContextTokens, 2048)
        XCTAssertEqual(preview.maxBatchSequences, 4)
        XCTAssertEqual(preview.estimatedTokensPerSecond, p.tokensPerSecond)
        XCTAssertEqual(preview.stages.map(\.workerID), p.plan.stages.map(\.workerID))
        XCTAssertEqual(preview.stages.map { Int($0.layerEnd) - Int($0.layerStart) }, p.plan.stages.map(\.layers.count))
        XCTAssertEqual(preview.stages.map(\.estimatedStepMs), p.stageMs)
        XCTAssertEqual(preview.stages.map(\.workerMemoryBytes), [UInt64](repeating: 32 << 30, count: 4))
        XCTAssertEqual(preview.stages.last?.layerEnd, 80)
    }
}

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
