import CaravanCore
import Planning
import XCTest

final class RebalancerTests: XCTestCase {
    private let model = ModelFacts(layerCount: 30, layerBytes: Array(repeating: 1 << 20, count: 30), embeddingBytes: 1 << 20,
                                   outputBytes: 1 << 20, kvBytesPerTokenPerLayer: 64)

    private func member(_ id: String, stepMs: Float, steps: UInt64 = 100) -> MeasuredWorker {
        MeasuredWorker(workerID: id, memoryBytes: 1 << 30, speed: 1, stepsRun: steps, recentStepMs: stepMs)
    }

    func testAWorkerTwiceAsSlowAsPlannedMovesLayers() throws {
        // 15 + 15 layers; w2 now takes 20 ms where w1 takes 10: measured speeds 1.5 and 0.75 layers/ms.
        let w1 = member("w1", stepMs: 10), w2 = member("w2", stepMs: 20)
        let d = try XCTUnwrap(Rebalancer.evaluate(stages: [(w1, 15), (w2, 15)], candidates: [w1, w2], model: model,
                                                  contextTokens: 64, batchSequences: 1, slowFactor: 0.75, minimumSteps: 16))
        XCTAssertEqual(d.currentMs, 20)
        XCTAssertLessThan(d.predictedMs, 0.75 * 20)
        XCTAssertTrue(d.reason.contains("worker w2 is slow"), d.reason)
        let input = Rebalancer.planInput([w1, w2], layersInPlan: ["w1": 15, "w2": 15], minimumSteps: 16)
        XCTAssertEqual(input.map(\.speed), [1.5, 0.75])
        let plan = try Planner.plan(model: model, workers: input, contextTokens: 64, batchSequences: 1)
        XCTAssertEqual(plan.stages.map(\.layers.count), [21, 9], "the slow last worker keeps about a third, less the output matrix's share")
    }

    func testSmallDifferencesDoNotFlap() {
        // 10% slower: a new plan would gain less than the 0.75 bar.
        let w1 = member("w1", stepMs: 10), w2 = member("w2", stepMs: 11)
        XCTAssertNil(Rebalancer.evaluate(stages: [(w1, 15), (w2, 15)], candidates: [w1, w2], model: model,
                                         contextTokens: 64, batchSequences: 1, slowFactor: 0.75, minimumSteps: 16))
    }

    func testTooFewMeasurementsDecideNothing() {
        let w1 = member("w1", stepMs: 10), w2 = member("w2", stepMs: 40, steps: 3)
        XCTAssertNil(Rebalancer.evaluate(stages: [(w1, 15), (w2, 15)], candidates: [w1, w2], model: model,
                                         contextTokens: 64, batchSequences: 1, slowFactor: 0.75, minimumSteps: 16))
    }

    func testAnIdleWorkerOutsideThePlanIsScaledLikeTheMeasuredOnes() {
        let w1 = member("w1", stepMs: 30)  // all 30 layers: 1 layer/ms
        let spare = member("w3", stepMs: 0, steps: 0)
        let input = Rebalancer.planInput([w1, spare], layersInPlan: ["w1": 30], minimumSteps: 16)
        XCTAssertEqual(input.map(\.speed), [1, 1], "registered speed 1 scaled by w1's measured/registered ratio")
    }
}
