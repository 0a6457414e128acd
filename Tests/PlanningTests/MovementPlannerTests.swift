import CaravanCore
import Planning
import XCTest

/// Re-plans that move the fewest bytes (issue 13): what each worker holds is weighed.
final class MovementPlannerTests: XCTestCase {
    private let mib = 1 << 20
    private var model: ModelFacts {
        ModelFacts(layerCount: 30, layerBytes: Array(repeating: mib, count: 30), embeddingBytes: mib, outputBytes: mib,
                   kvBytesPerTokenPerLayer: 64)
    }

    private func worker(_ id: String, speed: Double, held: Range<Int>? = nil, file: Bool = false) -> PlanWorker {
        var h = LayerHoldings(wholeFile: file)
        if let held { h.add(stage: LayerRange(held.lowerBound, held.upperBound)!, layerCount: 30) }
        return PlanWorker(id: id, memoryBytes: 1 << 30, speed: speed, holdings: h)
    }

    private func ranges(_ plan: PipelinePlan) -> [String] { plan.stages.map { "\($0.workerID)\($0.layers)" } }

    func testHoldingsCountTheBytesAStageMustPull() {
        var h = LayerHoldings()
        h.add(stage: LayerRange(0, 10)!, layerCount: 30)
        XCTAssertEqual(h.bytesToPull(0, 10, model: model), 0)
        XCTAssertEqual(h.bytesToPull(0, 12, model: model), UInt64(2 * mib))
        XCTAssertEqual(h.bytesToPull(5, 30, model: model), UInt64(20 * mib + mib), "20 blocks and the output")
        XCTAssertEqual(LayerHoldings().bytesToPull(0, 30, model: model), UInt64(32 * mib), "blocks, embedding and output")
        XCTAssertEqual(LayerHoldings(wholeFile: true).bytesToPull(0, 30, model: model), 0)
    }

    /// w2 (the middle of three) is lost; w3 is measured three times as fast as w1. The
    /// proportional plan would move two of w1's layers to w3; recovery keeps what each survivor
    /// holds and gives the lost range to the neighbours, pulling only its bytes.
    func testAfterALossSurvivorsKeepTheirLayersAndOnlyTheLostRangeMoves() throws {
        let survivors = [worker("w1", speed: 1, held: 0..<10), worker("w3", speed: 3, held: 20..<30)]
        let proportional = try Planner.plan(model: model, workers: survivors, contextTokens: 64, batchSequences: 1)
        XCTAssertGreaterThan(Planner.pullBytes(proportional, workers: survivors, model: model), UInt64(10 * mib),
                             "the proportional plan moves layers a survivor held: \(ranges(proportional))")
        let plan = try Planner.plan(model: model, workers: survivors, contextTokens: 64, batchSequences: 1,
                                    movement: .recovery(linkBytesPerSecond: 100e6))
        XCTAssertEqual(ranges(plan), ["w1[0, 10)", "w3[10, 30)"])
        XCTAssertEqual(Planner.pullBytes(plan, workers: survivors, model: model), UInt64(10 * mib), "just the lost layers")
    }

    /// Equal survivors: the lost range is split between them for the best pipeline.
    func testTheLostRangeIsSplitForSpeedAmongPlansThatMoveNothingElse() throws {
        let survivors = [worker("w1", speed: 1, held: 0..<10), worker("w3", speed: 1, held: 20..<30)]
        let plan = try Planner.plan(model: model, workers: survivors, contextTokens: 64, batchSequences: 1,
                                    movement: .recovery(linkBytesPerSecond: 100e6))
        XCTAssertEqual(Planner.pullBytes(plan, workers: survivors, model: model), UInt64(10 * mib))
        // 31 layer-times of work (the output matrix weighs one layer) over two equal workers.
        XCTAssertEqual(Planner.bottleneck(plan, workers: survivors, model: model), 16)
        XCTAssertTrue(plan.stages[0].layers.end >= 10 && plan.stages[1].layers.start <= 20, "\(ranges(plan))")
    }

    func testWithNothingHeldOrEverythingLocalThePlanIsTheProportionalOne() throws {
        for file in [false, true] {
            let workers = [worker("a", speed: 1, file: file), worker("b", speed: 2, file: file), worker("c", speed: 1, file: file)]
            let proportional = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1)
            let weighed = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1,
                                           movement: .recovery(linkBytesPerSecond: 100e6))
            XCTAssertEqual(ranges(weighed), ranges(proportional), "file: \(file)")
        }
    }

    /// A slow worker: moving layers pays only when the gain over the payback time exceeds the pull.
    func testARebalanceMovesLayersOnlyWhenTheGainPaysForThePull() throws {
        let workers = [worker("w1", speed: 1, held: 0..<15), worker("w2", speed: 0.5, held: 15..<30)]
        let slowLink = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1,
                                        movement: MovementCost(linkBytesPerSecond: Double(mib) / 100, paybackSeconds: 60))
        XCTAssertEqual(ranges(slowLink), ["w1[0, 15)", "w2[15, 30)"], "100 s per layer moved: nothing moves")
        let fastLink = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1,
                                        movement: MovementCost(linkBytesPerSecond: 1e9, paybackSeconds: 60))
        XCTAssertGreaterThan(fastLink.stages[0].layers.count, 15, "a fast link: w1 takes layers from the slow w2")
        XCTAssertLessThan(Planner.bottleneck(fastLink, workers: workers, model: model),
                          Planner.bottleneck(slowLink, workers: workers, model: model))
    }
}
