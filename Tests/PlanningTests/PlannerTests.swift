import CaravanCore
import GGUF
import Planning
import TestSupport
import XCTest

final class PlannerTests: XCTestCase {
    /// 12 layers of 10 MiB, 4 MiB embedding, 6 MiB output, 1 KiB KV per token and layer.
    private let model = ModelFacts(layerCount: 12, layerBytes: [Int](repeating: 10 << 20, count: 12), embeddingBytes: 4 << 20,
                                   outputBytes: 6 << 20, kvBytesPerTokenPerLayer: 1024)
    private let gib: UInt64 = 1 << 30

    private func ranges(_ plan: PipelinePlan) -> [String] { plan.stages.map { "\($0.workerID)\($0.layers)" } }

    func testEqualWorkersGetEqualContiguousShares() throws {
        let workers = (0..<3).map { PlanWorker(id: "w\($0)", memoryBytes: gib, speed: 1) }
        let plan = try Planner.plan(model: model, workers: workers, contextTokens: 256, batchSequences: 4)
        XCTAssertEqual(ranges(plan), ["w0[0, 4)", "w1[4, 8)", "w2[8, 12)"])
    }

    func testSharesFollowSpeed() throws {
        let workers = [PlanWorker(id: "fast", memoryBytes: gib, speed: 3), PlanWorker(id: "slow", memoryBytes: gib, speed: 1)]
        let plan = try Planner.plan(model: model, workers: workers, contextTokens: 256, batchSequences: 4)
        XCTAssertEqual(ranges(plan), ["fast[0, 9)", "slow[9, 12)"])
    }

    func testMemoryCapsAShareAndTheRestMoves() throws {
        // KV: 256 tokens x 4 sequences x 1 KiB = 1 MiB per layer; the first stage also holds the
        // 4 MiB embedding and 32 MiB overhead: 70 MiB fit 3 layers (33 MiB + 36 MiB = 69 MiB).
        let small: UInt64 = 70 << 20
        let workers = [PlanWorker(id: "small", memoryBytes: small, speed: 1), PlanWorker(id: "big", memoryBytes: gib, speed: 1)]
        let plan = try Planner.plan(model: model, workers: workers, contextTokens: 256, batchSequences: 4)
        XCTAssertEqual(ranges(plan), ["small[0, 3)", "big[3, 12)"])
        for stage in plan.stages {
            let offered = workers.first { $0.id == stage.workerID }!.memoryBytes
            XCTAssertLessThanOrEqual(stage.memoryBytes, offered)
        }
    }

    func testWorkerThatFitsNothingIsLeftOut() throws {
        let workers = [PlanWorker(id: "tiny", memoryBytes: 1 << 20, speed: 5), PlanWorker(id: "big", memoryBytes: gib, speed: 1)]
        let plan = try Planner.plan(model: model, workers: workers, contextTokens: 256, batchSequences: 4)
        XCTAssertEqual(ranges(plan), ["big[0, 12)"])
    }

    func testTooLittleMemoryIsAClearError() {
        let workers = (0..<2).map { PlanWorker(id: "w\($0)", memoryBytes: 50 << 20, speed: 1) }
        XCTAssertThrowsError(try Planner.plan(model: model, workers: workers, contextTokens: 256, batchSequences: 4)) { error in
            guard case let .insufficientMemory(needed, offered, _)? = error as? PlanError else { return XCTFail("\(error)") }
            XCTAssertEqual(offered, 100 << 20)
            XCTAssertEqual(needed, (120 + 12 + 4 + 6 + 32) << 20)
            let text = "\(error)"
            XCTAssertTrue(text.contains("174 MiB") && text.contains("100 MiB") && text.contains("w1 50 MiB"), text)
        }
        XCTAssertThrowsError(try Planner.plan(model: model, workers: [], contextTokens: 1, batchSequences: 1)) {
            XCTAssertEqual($0 as? PlanError, .noWorkers)
        }
    }

    func testFactsOfTheRealModel() throws {
        let file = try GGUFFile(path: try TestModel.requirePath())
        let facts = try ModelFacts(file: file)
        XCTAssertEqual(facts.layerCount, 30)
        XCTAssertEqual(facts.vocabularySize, 49152)
        XCTAssertTrue(facts.layerBytes.allSatisfy { $0 > 0 })
        XCTAssertGreaterThan(facts.embeddingBytes, 0)
        XCTAssertGreaterThanOrEqual(facts.outputBytes, facts.embeddingBytes, "tied output holds the embedding again")
        // Every block's matrices: d x (2d + 2 kv + 3 ffn) weights, one multiply-add each per token.
        XCTAssertEqual(facts.layerMultiplyAdds, 576 * (2 * 576 + 2 * 192 + 3 * 1536))
        XCTAssertEqual(facts.outputWorkInLayers, 8, accuracy: 1e-12, "the 49152 x 576 head is worth 8 blocks")
        let total = facts.layerBytes.reduce(0, +) + facts.embeddingBytes
        XCTAssertLessThanOrEqual(total, file.fileSize)
        XCTAssertGreaterThan(total, file.fileSize * 9 / 10)
    }

    /// The last stage also runs the output matrix: with an output as heavy as 6 layers, two equal
    /// workers split 30 layers 18 + 12 (each then does the work of 18 layers).
    func testTheLastStageCountsTheOutputMatrix() throws {
        let facts = ModelFacts(layerCount: 30, layerBytes: [Int](repeating: 2 << 20, count: 30), embeddingBytes: 12 << 20,
                               outputBytes: 12 << 20, kvBytesPerTokenPerLayer: 64)
        let equal = [PlanWorker(id: "a", memoryBytes: gib, speed: 1), PlanWorker(id: "b", memoryBytes: gib, speed: 1)]
        XCTAssertEqual(ranges(try Planner.plan(model: facts, workers: equal, contextTokens: 64, batchSequences: 1)),
                       ["a[0, 18)", "b[18, 30)"])
        let alone = try Planner.plan(model: facts, workers: [equal[0]], contextTokens: 64, batchSequences: 1)
        XCTAssertEqual(ranges(alone), ["a[0, 30)"])
    }
}
