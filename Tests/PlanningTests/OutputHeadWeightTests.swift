import CaravanCore
import Planning
import XCTest

/// The last stage runs the output head besides its blocks; the planner weighs the head by its
/// multiply-adds, so that stages of equal speed get equal arithmetic (issue 16: weighed by bytes,
/// SmolLM2's 8-bit head next to 4-bit blocks counted as 15 blocks instead of 8, and the last
/// stage sat idle on a compute-bound cluster).
final class OutputHeadWeightTests: XCTestCase {
    private let gib: UInt64 = 1 << 30

    // Multiply-adds of one token through one block, from the published configurations:
    // d x (2d + 2 kv + 3 ffn).
    private let smolBlock = 576 * (2 * 576 + 2 * 192 + 3 * 1536)  // 3 538 944
    private let smolHead = 49152 * 576
    private let llama70bBlock = 8192 * (2 * 8192 + 2 * 1024 + 3 * 28672)  // 855 638 016
    private let llama70bHead = 128_256 * 8192

    /// SmolLM2-135M as llama.cpp quantizes it to Q4_0: 4-bit blocks, and the tied embedding, which
    /// is also the head, at Q8_0 (its width 576 is no multiple of 256, so Q6_K does not apply).
    private func smolLM2() throws -> ModelFacts {
        var facts = try ModelFacts(architecture: ModelArchitecture.presets["smollm2-135m"]!, quantization: .q4_0)
        facts.embeddingBytes = 49152 * 576 / 32 * 34
        facts.outputBytes = facts.embeddingBytes + 576 * 4
        return facts
    }

    private func llama70b(blocks: Int) throws -> ModelFacts {
        var a = ModelArchitecture.presets["llama3-70b"]!
        a.layerCount = blocks
        return try ModelFacts(architecture: a, quantization: .q4_k_m)
    }

    private func equalWorkers(_ n: Int) -> [PlanWorker] {
        (0..<n).map { PlanWorker(id: "w\($0)", memoryBytes: 1 << 40, speed: 1) }
    }

    /// Each stage's multiply-adds per token: its blocks, and the head for the last.
    private func stageWork(_ plan: PipelinePlan, block: Int, head: Int, layers: Int) -> [Int] {
        plan.stages.map { $0.layers.count * block + ($0.layers.end == layers ? head : 0) }
    }

    func testTheHeadWeighsItsMultiplyAddsNotItsBytes() throws {
        let smol = try smolLM2()
        XCTAssertEqual(smol.layerMultiplyAdds, smolBlock)
        XCTAssertEqual(smol.outputMultiplyAdds, smolHead)
        XCTAssertEqual(smol.outputWorkInLayers, 8, accuracy: 1e-12)
        let averageBlock = Double(smol.layerBytes.reduce(0, +)) / 30
        XCTAssertGreaterThan(Double(smol.outputBytes) / averageBlock, 14, "by bytes the 8-bit head is worth ~15 blocks")

        let big = try llama70b(blocks: 80)
        XCTAssertEqual(big.layerMultiplyAdds, llama70bBlock)
        XCTAssertEqual(big.outputWorkInLayers, Double(llama70bHead) / Double(llama70bBlock), accuracy: 1e-12)
        XCTAssertEqual(big.outputWorkInLayers, 1.23, accuracy: 0.01)
    }

    /// Equal workers get equal work within one block, the head included, for SmolLM2 and for the
    /// 70B shape (the full 80 blocks, and the 6-block benchmark file).
    func testEqualWorkersGetEqualWorkWithinOneBlockIncludingTheHead() throws {
        let cases: [(String, ModelFacts, Int, Int, ClosedRange<Int>)] = [
            ("SmolLM2", try smolLM2(), smolBlock, smolHead, 2...4),
            ("70B", try llama70b(blocks: 80), llama70bBlock, llama70bHead, 2...4),
            ("70B, 6 blocks", try llama70b(blocks: 6), llama70bBlock, llama70bHead, 2...3),
        ]
        for (name, facts, block, head, counts) in cases {
            for n in counts {
                let plan = try Planner.plan(model: facts, workers: equalWorkers(n), contextTokens: 256, batchSequences: 4)
                XCTAssertEqual(plan.stages.count, n, "\(name), \(n) workers")
                let work = stageWork(plan, block: block, head: head, layers: facts.layerCount)
                XCTAssertLessThanOrEqual(work.max()! - work.min()!, block,
                                         "\(name), \(n) workers: \(plan.stages.map(\.layers)) do \(work) multiply-adds")
            }
        }
        // SmolLM2 on two workers: 19 blocks, and 11 blocks + the head (8 blocks' worth).
        let two = try Planner.plan(model: try smolLM2(), workers: equalWorkers(2), contextTokens: 256, batchSequences: 4)
        XCTAssertEqual(two.stages.map(\.layers), [LayerRange(0, 19)!, LayerRange(19, 30)!])
    }

    /// The movement-aware planner and the rebalancer weigh the head the same way: a balanced
    /// SmolLM2 pipeline whose two stages take equal time looks balanced (no re-plan), and the
    /// movement-aware plan with nothing held is the proportional one.
    func testTheRebalancerAndTheMovementPlannerAgree() throws {
        let smol = try smolLM2()
        let work = Rebalancer.stageWork([("w0", 19), ("w1", 11)], model: smol)
        XCTAssertEqual(work["w0"]!, 19, accuracy: 1e-12)
        XCTAssertEqual(work["w1"]!, 19, accuracy: 1e-12)
        let measured = ["w0", "w1"].map { MeasuredWorker(workerID: $0, memoryBytes: gib, speed: 1, stepsRun: 100, recentStepMs: 10) }
        XCTAssertNil(Rebalancer.evaluate(stages: [(measured[0], 19), (measured[1], 11)], candidates: measured, model: smol,
                                         contextTokens: 256, batchSequences: 4, slowFactor: 0.95, minimumSteps: 16))
        let input = Rebalancer.planInput(measured, layersInPlan: work, minimumSteps: 16)
        XCTAssertEqual(input.map(\.speed), [1.9, 1.9])
        let moving = try Planner.plan(model: smol, workers: equalWorkers(2), contextTokens: 256, batchSequences: 4,
                                      movement: MovementCost(linkBytesPerSecond: 1e8, paybackSeconds: 60))
        XCTAssertEqual(moving.stages.map(\.layers), [LayerRange(0, 19)!, LayerRange(19, 30)!])
        XCTAssertEqual(Planner.bottleneck(moving, workers: equalWorkers(2), model: smol), 19, accuracy: 1e-9)
    }

    /// Facts that do not count multiply-adds (a model shape from an older client) weigh the head by
    /// its bytes, as before.
    func testWithoutMultiplyAddsTheBytesDecide() {
        let facts = ModelFacts(layerCount: 30, layerBytes: [Int](repeating: 2 << 20, count: 30), embeddingBytes: 12 << 20,
                               outputBytes: 12 << 20, kvBytesPerTokenPerLayer: 64, vocabularySize: 49152, embeddingLength: 576)
        XCTAssertEqual(facts.outputWorkInLayers, 6, accuracy: 1e-12)
        var counted = facts
        counted.layerMultiplyAdds = smolBlock
        XCTAssertEqual(counted.outputWorkInLayers, 8, accuracy: 1e-12)
        var huge = counted
        huge.vocabularySize = Int(UInt32.max)
        huge.embeddingLength = Int(UInt32.max) * 4
        XCTAssertEqual(huge.outputMultiplyAdds, .max, "saturates instead of trapping")
    }
}
