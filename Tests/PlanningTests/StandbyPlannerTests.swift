import CaravanCore
import Planning
import XCTest

/// Standby copies (issue 13): placed so that the recovery plan after any single loss pulls nothing.
final class StandbyPlannerTests: XCTestCase {
    private let mib: UInt64 = 1 << 20
    private let model = ModelFacts(layerCount: 30, layerBytes: Array(repeating: 1 << 20, count: 30), embeddingBytes: 1 << 20,
                                   outputBytes: 2 << 20, kvBytesPerTokenPerLayer: 64)

    private func worker(_ id: String, speed: Double = 1, held: Range<Int>, file: Bool = false,
                        memory: UInt64 = 1 << 30) -> PlanWorker {
        var h = LayerHoldings(wholeFile: file)
        h.add(stage: LayerRange(held.lowerBound, held.upperBound)!, layerCount: 30)
        return PlanWorker(id: id, memoryBytes: memory, speed: speed, holdings: h)
    }

    private func plan(_ workers: [PlanWorker]) -> PipelinePlan {
        PipelinePlan(stages: workers.map { w in
            let layers = w.holdings.layers
            return PlannedStage(workerID: w.id, layers: LayerRange(layers.min()!, layers.max()! + 1)!, memoryBytes: 0)
        })
    }

    private func describe(_ p: StandbyPlacement) -> [String: String] {
        p.copies.mapValues { $0.ranges.map(\.description).joined(separator: " ") }
    }

    /// For every single loss: the survivors, holding their copies, and the bytes the recovery
    /// plan pulls.
    private func recoveryPulls(_ workers: [PlanWorker], _ placement: StandbyPlacement) throws -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for lost in workers {
            let survivors = workers.filter { $0.id != lost.id }.map { w -> PlanWorker in
                var w = w
                for r in placement.copies[w.id]?.ranges ?? [] { w.holdings.add(stage: r, layerCount: model.layerCount) }
                return w
            }
            let recovery = try Planner.plan(model: model, workers: survivors, contextTokens: 64, batchSequences: 1,
                                            movement: .recovery(linkBytesPerSecond: 100e6))
            out[lost.id] = Planner.pullBytes(recovery, workers: survivors, model: model)
        }
        return out
    }

    func testWithRoomEveryLossOfThreeIsCoveredWithoutAPull() throws {
        let workers = [worker("a", held: 0..<10), worker("b", held: 10..<20), worker("c", held: 20..<30)]
        let placement = Planner.standby(for: plan(workers), workers: workers, budgets: ["a": 1 << 30, "b": 1 << 30, "c": 1 << 30],
                                        model: model, contextTokens: 64, batchSequences: 1)
        XCTAssertEqual(placement.uncovered, [])
        // The first stage's layers can only go to the second, the last's only to the one before
        // it; the middle's are split between its two neighbours for the best pipeline.
        XCTAssertEqual(placement.copies["b"]?.ranges, [LayerRange(0, 10)!, LayerRange(20, 30)!])
        let a = try XCTUnwrap(placement.copies["a"]?.ranges)
        let c = try XCTUnwrap(placement.copies["c"]?.ranges)
        XCTAssertEqual(a.count, 1)
        XCTAssertEqual(c.count, 1)
        XCTAssertEqual(a.first?.start, 10)
        XCTAssertEqual(a.first?.end, c.first?.start, "a and c split b's range")
        XCTAssertEqual(c.first?.end, 20)
        XCTAssertEqual(placement.copies["b"]?.bytes, 20 * mib + mib + 2 * mib, "blocks, the embedding and the output")
        XCTAssertEqual(try recoveryPulls(workers, placement), ["a": 0, "b": 0, "c": 0])
        XCTAssertNotEqual(try recoveryPulls(workers, StandbyPlacement()).values.min(), 0, "without copies every loss pulls")
    }

    func testUnequalSpeedsAndFourWorkersStillPullNothingAfterAnyLoss() throws {
        let workers = [worker("a", speed: 1, held: 0..<5), worker("b", speed: 3, held: 5..<17), worker("c", speed: 1, held: 17..<22),
                       worker("d", speed: 2, held: 22..<30)]
        let budgets = Dictionary(uniqueKeysWithValues: workers.map { ($0.id, UInt64(1) << 30) })
        let placement = Planner.standby(for: plan(workers), workers: workers, budgets: budgets, model: model, contextTokens: 64,
                                        batchSequences: 1)
        XCTAssertEqual(placement.uncovered, [], "\(describe(placement))")
        XCTAssertEqual(try recoveryPulls(workers, placement), ["a": 0, "b": 0, "c": 0, "d": 0], "\(describe(placement))")
    }

    func testNoBudgetNoCopies() throws {
        let workers = [worker("a", held: 0..<10), worker("b", held: 10..<20), worker("c", held: 20..<30)]
        let placement = Planner.standby(for: plan(workers), workers: workers, budgets: ["a": 0], model: model, contextTokens: 64,
                                        batchSequences: 1)
        XCTAssertEqual(placement.copies, [:])
        XCTAssertEqual(placement.uncovered, ["a", "b", "c"])
    }

    /// Workers with the file pull nothing and need no budget, but each still gets its part of
    /// its neighbours' layers (held already), so that those stages mirror their KV rows to it.
    func testWorkersWithTheFileNeedNoBudgetAndHoldTheirPartsAlready() throws {
        let workers = [worker("a", held: 0..<10, file: true), worker("b", held: 10..<20, file: true), worker("c", held: 20..<30, file: true)]
        let placement = Planner.standby(for: plan(workers), workers: workers, budgets: [:], model: model, contextTokens: 64,
                                        batchSequences: 1)
        XCTAssertEqual(placement.uncovered, [])
        let a = try XCTUnwrap(placement.copies["a"]), b = try XCTUnwrap(placement.copies["b"]), c = try XCTUnwrap(placement.copies["c"])
        XCTAssertEqual(b.ranges, [LayerRange(0, 10)!, LayerRange(20, 30)!], "the middle worker takes over either end")
        XCTAssertEqual(a.ranges.first?.start, 10)
        XCTAssertEqual(c.ranges.last?.end, 20)
        XCTAssertEqual(a.ranges.last?.end, c.ranges.first?.start, "the middle stage is split between its neighbours")
        for copies in [a, b, c] {
            XCTAssertEqual(copies.heldBytes(LayerHoldings(wholeFile: true), layerCount: 30), copies.bytes, "held from the start")
        }
    }

    func testOneStageHasNoSurvivorToCoverIt() {
        let workers = [worker("a", held: 0..<30)]
        let placement = Planner.standby(for: plan(workers), workers: workers, budgets: ["a": 1 << 30], model: model,
                                        contextTokens: 64, batchSequences: 1)
        XCTAssertEqual(placement, StandbyPlacement())
    }

    /// The middle stage's right neighbour has no budget: its left neighbour keeps all of it.
    func testABudgetTooSmallSendsTheCopyToTheOtherNeighbour() throws {
        let workers = [worker("a", held: 0..<10), worker("b", held: 10..<20), worker("c", held: 20..<30)]
        let placement = Planner.standby(for: plan(workers), workers: workers, budgets: ["a": 10 * mib, "b": 1 << 30, "c": 0],
                                        model: model, contextTokens: 64, batchSequences: 1)
        XCTAssertEqual(placement.copies["a"]?.ranges, [LayerRange(10, 20)!])
        XCTAssertNil(placement.copies["c"])
        XCTAssertEqual(placement.uncovered, [], "c's loss is covered by b")
        XCTAssertEqual(try recoveryPulls(workers, placement), ["a": 0, "b": 0, "c": 0])
    }

    /// A neighbour without the memory to run its stage and the lost range is not given a copy.
    func testANeighbourWithoutMemoryForBothStagesGetsNoCopy() {
        let stage = Planner.stageMemoryBytes(LayerRange(0, 10)!, model: model, contextTokens: 64, batchSequences: 1)
        let workers = [worker("a", held: 0..<10, memory: stage), worker("b", held: 10..<20), worker("c", held: 20..<30)]
        let budgets = Dictionary(uniqueKeysWithValues: workers.map { ($0.id, UInt64(1) << 30) })
        let placement = Planner.standby(for: plan(workers), workers: workers, budgets: budgets, model: model, contextTokens: 64,
                                        batchSequences: 1)
        XCTAssertNil(placement.copies["a"], "a has no memory to spare")
        XCTAssertEqual(placement.copies["c"]?.ranges, [LayerRange(10, 20)!])
        XCTAssertEqual(placement.uncovered, [])
    }

    /// A neighbour that already holds part of the lost range (its layer cache) keeps that part.
    func testLayersAlreadyHeldAreUsedFirst() {
        var c = worker("c", held: 20..<30)
        c.holdings.add(stage: LayerRange(10, 20)!, layerCount: 30)
        let workers = [worker("a", held: 0..<10), worker("b", held: 10..<20), c]
        let budgets = Dictionary(uniqueKeysWithValues: workers.map { ($0.id, UInt64(1) << 30) })
        let stages = PipelinePlan(stages: [("a", 0, 10), ("b", 10, 20), ("c", 20, 30)].map {
            PlannedStage(workerID: $0.0, layers: LayerRange($0.1, $0.2)!, memoryBytes: 0)
        })
        let placement = Planner.standby(for: stages, workers: workers, budgets: budgets, model: model, contextTokens: 64,
                                        batchSequences: 1)
        XCTAssertEqual(placement.copies["c"]?.ranges, [LayerRange(10, 20)!])
        XCTAssertNil(placement.copies["a"])
    }

    func testHeldBytesCountWholeRangesOnly() {
        let copies = StandbyCopies(ranges: [LayerRange(0, 2)!, LayerRange(28, 30)!], rangeBytes: [3 * mib, 4 * mib])
        var h = LayerHoldings()
        h.add(stage: LayerRange(0, 2)!, layerCount: 30)
        h.layers.insert(28)
        XCTAssertEqual(copies.heldBytes(h, layerCount: 30), 3 * mib)
        h.layers.insert(29)
        XCTAssertEqual(copies.heldBytes(h, layerCount: 30), 3 * mib, "the output is not held yet")
        h.output = true
        XCTAssertEqual(copies.heldBytes(h, layerCount: 30), 7 * mib)
        XCTAssertEqual(copies.heldBytes(LayerHoldings(wholeFile: true), layerCount: 30), 7 * mib)
    }
}
