import CaravanCore
import Planning
import XCTest

/// The planner's values as CaravanCore's admin values: a model shape a client sends, a paper
/// prediction it prints (their wire forms are `CaravanWire`'s).
final class ModelShapeTests: XCTestCase {
    private let llama70b = ModelArchitecture.presets["llama3-70b"]!

    func testShapeRoundTripsAndBadShapesAreRefused() throws {
        let facts = try ModelFacts(architecture: llama70b, quantization: .q4_0)
        let back = try ModelFacts(shape: facts.modelShape(name: "x"))
        XCTAssertEqual(back, facts)
        XCTAssertThrowsError(try ModelFacts(shape: ModelShape(name: "", layerBytes: [], embeddingBytes: 0, outputBytes: 0,
                                                              kvBytesPerTokenPerLayer: 0, embeddingLength: 0, vocabularySize: 0)))
        var zero = facts.modelShape(name: "x")
        zero.layerBytes[3] = 0
        XCTAssertThrowsError(try ModelFacts(shape: zero))
        var huge = facts.modelShape(name: "x")
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
        XCTAssertEqual(preview.stages.map(\.layers.count), p.plan.stages.map(\.layers.count))
        XCTAssertEqual(preview.stages.map(\.estimatedStepMs), p.stageMs)
        XCTAssertEqual(preview.stages.map(\.workerMemoryBytes), [UInt64](repeating: 32 << 30, count: 4))
        XCTAssertEqual(preview.stages.last?.layers.end, 80)
    }
}
