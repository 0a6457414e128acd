import CaravanCore
import CaravanctlCLI
import CaravanWire
import Coordinator
import Planning
import XCTest

/// Workers report what their layer caches hold (issue 13): the coordinator adds it to what they
/// hold, so a re-plan gives a worker the layers it cached earlier (even in an earlier run) instead
/// of pulling them again; and a pull in progress shows in the worker's status.
final class CachedHoldingsTests: XCTestCase {
    private let sha = String(repeating: "d", count: 64)
    private let other = String(repeating: "e", count: 64)
    private let mib = 1 << 20
    private var model: ModelFacts {
        ModelFacts(layerCount: 12, layerBytes: Array(repeating: mib, count: 12), embeddingBytes: mib, outputBytes: mib,
                   kvBytesPerTokenPerLayer: 64)
    }

    private func peer(_ n: UInt8) -> PeerID { PeerID([0, n]) }

    func testRegistrationAndHeartbeatsAddCachedLayersOfTheServedModel() throws {
        var m = Membership(expectedWorkers: 2, modelSHA256: sha, heartbeatTimeout: 2000)
        _ = m.register(peer: peer(1), workerID: "w1", dataAddress: "tcp://w1:1", memoryBytes: 1 << 30, speed: 1, heldModels: [],
                       cachedLayers: [CachedLayers(modelSHA256: sha, layers: [6, 7, 8], embedding: false, output: true),
                                      CachedLayers(modelSHA256: other, layers: [0, 1], embedding: true, output: false)],
                       now: 0)
        var w1 = try XCTUnwrap(m.members.first)
        XCTAssertEqual(w1.holdings, LayerHoldings(wholeFile: false, layers: [6, 7, 8], embedding: false, output: true),
                       "only the served model's layers count")
        // A pull reported in a heartbeat shows, and so do layers cached since.
        let pull = PullProgress(layers: LayerRange(9, 12)!, totalBytes: 3 << 20, doneBytes: 1 << 20, bytesPerSecond: 5e8, etaSeconds: 4)
        m.heartbeat(peer: peer(1), stepsRun: 0, recentStepMs: 0, recentRowsPerStep: 0, freeMemoryBytes: 0, pull: pull,
                    cachedLayers: [CachedLayers(modelSHA256: sha, layers: [9], embedding: false, output: false)], now: 100)
        w1 = try XCTUnwrap(m.members.first)
        XCTAssertEqual(w1.pull, pull)
        XCTAssertEqual(w1.holdings.layers, [6, 7, 8, 9])
        m.heartbeat(peer: peer(1), stepsRun: 0, recentStepMs: 0, recentRowsPerStep: 0, freeMemoryBytes: 0, now: 200)
        w1 = try XCTUnwrap(m.members.first)
        XCTAssertNil(w1.pull, "the pull ended")
        XCTAssertEqual(w1.holdings.layers, [6, 7, 8, 9], "what was reported stays known")
        // The same worker registering again (restarted with its cache) keeps what it held.
        _ = m.register(peer: peer(3), workerID: "w1", dataAddress: "tcp://w1:2", memoryBytes: 1 << 30, speed: 1, heldModels: [],
                       cachedLayers: [CachedLayers(modelSHA256: sha, layers: [10, 11], embedding: false, output: false)],
                       now: 300)
        XCTAssertEqual(try XCTUnwrap(m.members.first { $0.workerID == "w1" }).holdings.layers, [6, 7, 8, 9, 10, 11])
        // The planner's input carries them.
        let input = Rebalancer.planInput(m.members, layersInPlan: [:], minimumSteps: 1)
        XCTAssertEqual(input.first?.holdings.layers, [6, 7, 8, 9, 10, 11])
    }

    /// After a loss, w1 (twice as fast) and w3 are left; w3's cache holds the last six layers from
    /// an earlier run, w1's the first six. The proportional plan would give w1 eight layers and
    /// make both pull; the recovery plan gives each the layers it cached and moves nothing.
    func testARecoveryPlanPrefersTheWorkerThatCachedTheLayers() throws {
        var first = LayerHoldings()
        first.add(cached: CachedLayers(modelSHA256: sha, layers: Array(0..<6), embedding: true, output: false))
        var last = LayerHoldings()
        last.add(cached: CachedLayers(modelSHA256: sha, layers: Array(6..<12), embedding: false, output: true))
        let workers = [PlanWorker(id: "w1", memoryBytes: 1 << 30, speed: 2, holdings: first),
                       PlanWorker(id: "w3", memoryBytes: 1 << 30, speed: 1, holdings: last)]
        let proportional = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1)
        XCTAssertGreaterThan(Planner.pullBytes(proportional, workers: workers, model: model), 0)
        let plan = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1,
                                    movement: .recovery(linkBytesPerSecond: 100e6))
        XCTAssertEqual(plan.stages.map(\.layers), [LayerRange(0, 6)!, LayerRange(6, 12)!])
        XCTAssertEqual(Planner.pullBytes(plan, workers: workers, model: model), 0)
        // Without the cache reports, the same plan would pull the second stage's layers.
        let blind = workers.map { PlanWorker(id: $0.id, memoryBytes: $0.memoryBytes, speed: $0.speed) }
        XCTAssertEqual(Planner.pullBytes(plan, workers: blind, model: model), UInt64(14 * mib))
    }

    /// A worker comes back (a restart, a repaired link) still holding the last stage it served,
    /// [8, 12), while w1 and w2 serve [0, 6) and [6, 12). The plan for the join weighs the bytes
    /// against the gain: over a slow link the proportional split (w2 pulling layers 4 and 5) does
    /// not pay back within the horizon, so the joined worker takes the layers it holds and
    /// nothing moves. Before, a join planned in proportion to speed whatever it moved.
    func testAJoinPlanGivesTheJoinedWorkerWhatItHoldsWhenMovingWouldNotPayBack() throws {
        var first = LayerHoldings()
        first.add(stage: LayerRange(0, 6)!, layerCount: 12)
        var second = LayerHoldings()
        second.add(stage: LayerRange(6, 12)!, layerCount: 12)
        var back = LayerHoldings()
        back.add(cached: CachedLayers(modelSHA256: sha, layers: Array(8..<12), embedding: false, output: true))
        let workers = [PlanWorker(id: "w1", memoryBytes: 1 << 30, speed: 1, holdings: first),
                       PlanWorker(id: "w2", memoryBytes: 1 << 30, speed: 1, holdings: second),
                       PlanWorker(id: "w3", memoryBytes: 1 << 30, speed: 1, holdings: back)]
        let proportional = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1)
        XCTAssertGreaterThan(Planner.pullBytes(proportional, workers: workers, model: model), 0)

        let slowLink = try XCTUnwrap(PlanPurpose.growth.movement(linkBytesPerSecond: 100_000, horizonSeconds: 10))
        XCTAssertEqual(slowLink.paybackSeconds, 10, "a join weighs movement over the rebalancing horizon")
        let plan = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1, movement: slowLink)
        XCTAssertEqual(plan.stages.map(\.workerID), ["w1", "w2", "w3"], "the joined worker takes part")
        XCTAssertEqual(plan.stages.last?.layers, LayerRange(8, 12), "it gets the layers it holds")
        XCTAssertEqual(Planner.pullBytes(plan, workers: workers, model: model), 0)

        // Over a fast link the balanced split pays back at once: the join moves layers for it.
        let fastLink = try XCTUnwrap(PlanPurpose.growth.movement(linkBytesPerSecond: 1e10, horizonSeconds: 10))
        let balanced = try Planner.plan(model: model, workers: workers, contextTokens: 64, batchSequences: 1, movement: fastLink)
        XCTAssertGreaterThan(Planner.pullBytes(balanced, workers: workers, model: model), 0)
        XCTAssertLessThan(Planner.bottleneck(balanced, workers: workers, model: model),
                          Planner.bottleneck(plan, workers: workers, model: model))
        // The first plan has nothing serving to weigh against; a recovery moves the fewest bytes.
        XCTAssertNil(PlanPurpose.initial.movement(linkBytesPerSecond: 1e8, horizonSeconds: 10))
        XCTAssertEqual(PlanPurpose.recovery.movement(linkBytesPerSecond: 1e8, horizonSeconds: 10)?.paybackSeconds, 0)
    }

    /// `caravanctl status` shows a line per pulling worker with bytes, rate and time left.
    func testStatusShowsAPullLine() throws {
        var s = Caravan_V1_ClusterStatus()
        var w = Caravan_V1_WorkerStatus()
        w.workerID = "w2"
        w.pull = PullProgress(layers: LayerRange(2, 4)!, totalBytes: 4_000_000_000, doneBytes: 1_000_000_000,
                              bytesPerSecond: 5e8, etaSeconds: 6).wire
        var idle = Caravan_V1_WorkerStatus()
        idle.workerID = "w1"
        s.workers = [idle, w]
        let text = AdminTables.status(try ClusterReport(wire: s))
        let lines = text.split(separator: "\n").filter { $0.contains("pulling layers") }
        XCTAssertEqual(lines.count, 1, text)
        let line = String(lines.first ?? "")
        XCTAssertTrue(line.contains("w2 pulling layers [2, 4)"), line)
        XCTAssertTrue(line.contains("(25 %)"), line)
        XCTAssertTrue(line.contains("500 MB/s"), line)
        XCTAssertTrue(line.contains("left"), line)
    }
}
