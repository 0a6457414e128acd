import CaravanCore
import Planning
import XCTest

/// Numbers chosen by a client or reported by a worker reach the planner and the rebalancer: none
/// of them may trap (integer overflow, `Int(NaN)`, duplicate dictionary keys); each gives a clear
/// error or is ignored. (The membership's part is in `MembershipTests`.)
final class HostileNumbersTests: XCTestCase {
    private let gib: UInt64 = 1 << 30
    /// SmolLM2-135M-like: 30 layers, 1.5 KiB of KV per token and layer.
    private let model = ModelFacts(layerCount: 30, layerBytes: Array(repeating: 3 << 20, count: 30), embeddingBytes: 28 << 20,
                                   outputBytes: 28 << 20, kvBytesPerTokenPerLayer: 1536)

    private func workers(_ n: Int, memory: UInt64 = 1 << 32, speed: Double = 1) -> [PlanWorker] {
        (0..<n).map { PlanWorker(id: "w\($0)", memoryBytes: memory, speed: speed) }
    }

    /// `caravanctl plan --ctx 4294967295 --batch-sequences 4294967295`: the KV cache size does not
    /// fit in 64 bits. A typed error, not a trap.
    func testAHugeContextAndBatchIsAClearErrorNotATrap() {
        XCTAssertThrowsError(try Planner.plan(model: model, workers: workers(2), contextTokens: 4_294_967_295,
                                              batchSequences: 4_294_967_295)) { error in
            guard case .sizeOutOfRange(let why)? = error as? PlanError else { return XCTFail("\(error)") }
            XCTAssertTrue(why.contains("4294967295 tokens") && why.contains("2^64"), why)
        }
        // Large but representable: the memory check answers.
        XCTAssertThrowsError(try Planner.plan(model: model, workers: workers(2), contextTokens: 4_294_967_295,
                                              batchSequences: 1)) { error in
            guard case .insufficientMemory? = error as? PlanError else { return XCTFail("\(error)") }
        }
    }

    /// A model whose sizes add up past 2^64 (a client's `ModelShape`, or layers times KV).
    func testSizesThatAddUpPast64BitsAreAClearError() {
        let heavy = ModelFacts(layerCount: 100_000, layerBytes: Array(repeating: (1 << 50) - 1, count: 100_000),
                               embeddingBytes: 1 << 40, outputBytes: 1 << 40, kvBytesPerTokenPerLayer: 1 << 20)
        XCTAssertThrowsError(try Planner.plan(model: heavy, workers: workers(2, memory: .max), contextTokens: 1,
                                              batchSequences: 1)) { error in
            guard case .sizeOutOfRange? = error as? PlanError else { return XCTFail("\(error)") }
        }
        let kvHeavy = ModelFacts(layerCount: 100_000, layerBytes: Array(repeating: 1, count: 100_000), embeddingBytes: 1,
                                 outputBytes: 1, kvBytesPerTokenPerLayer: (1 << 50) - 1)
        XCTAssertThrowsError(try Planner.plan(model: kvHeavy, workers: workers(1, memory: .max), contextTokens: 65_536,
                                              batchSequences: 1)) { error in
            guard case .sizeOutOfRange? = error as? PlanError else { return XCTFail("\(error)") }
        }
        let negative = ModelFacts(layerCount: 2, layerBytes: [1, -1], embeddingBytes: 1, outputBytes: 1, kvBytesPerTokenPerLayer: 1)
        XCTAssertThrowsError(try Planner.plan(model: negative, workers: workers(1), contextTokens: 1, batchSequences: 1)) { error in
            guard case .sizeOutOfRange? = error as? PlanError else { return XCTFail("\(error)") }
        }
    }

    /// Workers offering all the memory there is: the total offered saturates instead of trapping.
    func testMemoryOffersThatOverflowWhenAddedDoNotTrap() throws {
        let plan = try Planner.plan(model: model, workers: workers(3, memory: .max), contextTokens: 256, batchSequences: 4)
        XCTAssertEqual(plan.stages.last?.layers.end, 30)
        let tooBig = ModelFacts(layerCount: 1, layerBytes: [1 << 62], embeddingBytes: 1 << 62, outputBytes: 1 << 62,
                                kvBytesPerTokenPerLayer: 1)
        // Neither worker holds the 3 x 2^62 bytes; their offers add up past 2^64.
        XCTAssertThrowsError(try Planner.plan(model: tooBig, workers: [PlanWorker(id: "a", memoryBytes: 1 << 63, speed: 1),
                                                                       PlanWorker(id: "b", memoryBytes: 1 << 63, speed: 1)],
                                              contextTokens: 1, batchSequences: 1)) { error in
            guard case let .insufficientMemory(_, offered, _)? = error as? PlanError else { return XCTFail("\(error)") }
            XCTAssertEqual(offered, .max)
        }
    }

    /// Speeds a worker reported (or the rebalancer derived): infinite, NaN, huge or negative
    /// speeds plan as the slowest speed instead of turning the shares into NaN (`Int(NaN)` traps).
    func testNonFiniteAndExtremeSpeedsPlanWithoutTrapping() throws {
        for bad in [Double.infinity, -.infinity, .nan, .greatestFiniteMagnitude, -1, 0, 1e300] {
            let ws = [PlanWorker(id: "a", memoryBytes: gib, speed: bad), PlanWorker(id: "b", memoryBytes: gib, speed: 1),
                      PlanWorker(id: "c", memoryBytes: gib, speed: bad)]
            let plan = try Planner.plan(model: model, workers: ws, contextTokens: 256, batchSequences: 4)
            XCTAssertEqual(plan.stages.first?.layers.start, 0, "speed \(bad)")
            XCTAssertEqual(plan.stages.last?.layers.end, 30, "speed \(bad)")
        }
    }

    private func member(_ id: String, stepMs: Float, steps: UInt64 = 100, speed: Double = 1) -> MeasuredWorker {
        MeasuredWorker(workerID: id, memoryBytes: gib, speed: speed, stepsRun: steps, recentStepMs: stepMs)
    }

    /// Two members with one id (before the membership refused that, a worker could re-register its
    /// connection under another worker's id) reached `Dictionary(uniqueKeysWithValues:)`.
    func testDuplicateWorkerIDsDoNotTrapTheRebalancer() throws {
        let a = member("w1", stepMs: 10), b = member("w1", stepMs: 20)
        let input = Rebalancer.planInput([a, b], layersInPlan: ["w1": 15], minimumSteps: 16)
        XCTAssertEqual(input.count, 2)
        XCTAssertEqual(input.first?.speed, 1.5)
    }

    /// A worker's heartbeat said its steps take forever (infinite or NaN milliseconds): no
    /// measured speed comes from it and the slow-worker rule decides nothing (it formatted the
    /// infinite time with `Int(_:)`, which traps).
    func testNonFiniteStepTimesDecideNothing() {
        for bad in [Float.infinity, .nan] {
            let w1 = member("w1", stepMs: 10), w2 = member("w2", stepMs: bad)
            XCTAssertNil(Rebalancer.evaluate(stages: [(w1, 15), (w2, 15)], candidates: [w1, w2], model: model,
                                             contextTokens: 64, batchSequences: 1, slowFactor: 0.75, minimumSteps: 16))
            let input = Rebalancer.planInput([w1, w2], layersInPlan: ["w1": 15, "w2": 15], minimumSteps: 16)
            XCTAssertTrue(input.allSatisfy { $0.speed.isFinite }, "\(input)")
        }
    }

    /// A client's model shape may claim one multiply-add per block and the largest vocabulary and
    /// width: the head then weighs ~10^19 blocks. The plans still cover every layer, without a trap.
    func testAnAbsurdHeadWeightPlansWithoutTrapping() throws {
        var absurd = model
        absurd.layerMultiplyAdds = 1
        absurd.vocabularySize = Int(UInt32.max)
        absurd.embeddingLength = Int(UInt32.max)
        XCTAssertGreaterThan(absurd.outputWorkInLayers, 1e18)
        for n in 1...4 {
            let plan = try Planner.plan(model: absurd, workers: workers(n), contextTokens: 256, batchSequences: 4)
            XCTAssertEqual(plan.stages.first?.layers.start, 0)
            XCTAssertEqual(plan.stages.last?.layers.end, 30)
            XCTAssertEqual(plan.stages.map(\.layers.count).reduce(0, +), 30)
            let moving = try Planner.plan(model: absurd, workers: workers(n), contextTokens: 256, batchSequences: 4,
                                          movement: .recovery(linkBytesPerSecond: 1e8))
            XCTAssertEqual(moving.stages.last?.layers.end, 30)
        }
        let measured = (0..<2).map { MeasuredWorker(workerID: "w\($0)", memoryBytes: 1 << 32, speed: 1, stepsRun: 100, recentStepMs: 5) }
        // Whatever the rebalancer decides here, it must not trap.
        _ = Rebalancer.evaluate(stages: [(measured[0], 15), (measured[1], 15)], candidates: measured, model: absurd,
                                contextTokens: 256, batchSequences: 4, slowFactor: 0.75, minimumSteps: 16)
    }

    /// `caravanctl plan` on paper: sizes and shapes typed by a user give errors, not traps.
    func testPaperSizesAndShapesOutOfRangeAreErrors() {
        XCTAssertNil(PaperPlanner.parseBytes("1e30GiB"))
        XCTAssertNil(PaperPlanner.parseBytes("18446744073709551616"))
        XCTAssertEqual(PaperPlanner.parseBytes("16EiB".replacingOccurrences(of: "Ei", with: "Gi")), 16 << 30)
        var a = ModelArchitecture.presets["llama3-70b"]!
        a.embeddingLength = 1 << 40
        a.headCount = 1
        a.kvHeadCount = 1
        XCTAssertThrowsError(try ModelFacts(architecture: a, quantization: .q4_k_m))
        a = ModelArchitecture.presets["llama3-70b"]!
        a.layerCount = Int.max
        XCTAssertThrowsError(try ModelFacts(architecture: a, quantization: .q4_k_m))
    }
}
