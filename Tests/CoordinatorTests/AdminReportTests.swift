import CaravanCore
import CaravanctlCLI
import CaravanWire
import Coordinator
import Planning
import XCTest

final class AdminReportTests: XCTestCase {
    private let sha = String(repeating: "c", count: 64)
    private let template = AssignmentTemplate(
        modelName: "m.gguf", modelSHA256: String(repeating: "c", count: 64), modelSize: 100, modelLayerCount: 12,
        resultAddress: "tcp://coord:9", activationDType: .f16, maxContextTokens: 256, maxBatchSequences: 4, maxBatchTokens: 512)
    private let facts = ModelFacts(layerCount: 12, layerBytes: Array(repeating: 1 << 20, count: 12), embeddingBytes: 1 << 20,
                                   outputBytes: 1 << 20, kvBytesPerTokenPerLayer: 256, vocabularySize: 100, embeddingLength: 64)

    private func peer(_ n: UInt8) -> PeerID { PeerID([0, n]) }

    /// Three workers planned and served at t=1000, w1 reports step times, w3 falls silent.
    private func servingMembership() -> Membership {
        var m = Membership(expectedWorkers: 3, modelSHA256: sha, heartbeatTimeout: 4000)
        for n: UInt8 in 1...3 {
            _ = m.register(peer: peer(n), workerID: "w\(n)", dataAddress: "tcp://w\(n):1", memoryBytes: 1 << 30, speed: 1,
                           heldModels: [sha], now: 1000)
        }
        _ = m.planned(PipelinePlan(stages: [
            PlannedStage(workerID: "w1", layers: LayerRange(0, 4)!, memoryBytes: 5 << 20),
            PlannedStage(workerID: "w2", layers: LayerRange(4, 8)!, memoryBytes: 4 << 20),
            PlannedStage(workerID: "w3", layers: LayerRange(8, 12)!, memoryBytes: 5 << 20),
        ]), template: template)
        for n: UInt8 in 1...3 {
            m.stageMemory(peer: peer(n), bytes: UInt64(n) << 22)
            _ = m.assignmentReady(peer: peer(n), epoch: 1, error: nil, now: 1000)
        }
        m.heartbeat(peer: peer(1), stepsRun: 50, recentStepMs: 8, recentRowsPerStep: 2, freeMemoryBytes: 3 << 30, now: 2000)
        m.heartbeat(peer: peer(2), stepsRun: 50, recentStepMs: 4, recentRowsPerStep: 2, freeMemoryBytes: 0, now: 2000)
        return m
    }

    private func snapshot(_ m: Membership, now: UInt64, unavailable: String? = nil, jobs: [AdminJob] = []) -> ClusterSnapshot {
        ClusterSnapshot(nowMs: now, nowUnixMs: 1_700_000_000_000 + now, members: m.members, lostMembers: m.lostMembers,
                        phase: m.phase, expectedWorkers: m.expectedWorkers, planHistory: m.planHistory, jobs: jobs,
                        unavailableReason: unavailable, heartbeatIntervalMs: 500, heartbeatTimeoutMs: 4000)
    }

    func testStatusShowsLayerRangesHealthMemoryAndHistory() throws {
        let m = servingMembership()
        let running = JobStatus(job: JobID("job-2")!, state: .generating)
        let done = JobStatus(job: JobID("job-1")!, state: .finished)
        let s = AdminReports.clusterStatus(snapshot(m, now: 2300, jobs: [AdminJob(status: done), AdminJob(status: running, tokensPerSecond: 12.5)]),
                                           includeFinishedJobs: false)
        XCTAssertTrue(s.serving)
        XCTAssertEqual(s.planEpoch, 1)
        XCTAssertEqual(s.workers.map(\.workerID), ["w1", "w2", "w3"])
        XCTAssertEqual(s.workers.map { [$0.layerStart, $0.layerEnd] }, [[0, 4], [4, 8], [8, 12]])
        XCTAssertEqual(s.workers.map(\.stageIndex), [0, 1, 2])
        XCTAssertEqual(s.workers.map(\.state), [.ready, .ready, .ready])
        // w3 was last heard at 1000: 1300 ms > 2 intervals is suspect; the others are healthy.
        XCTAssertEqual(s.workers.map(\.health), [.healthy, .healthy, .suspect])
        XCTAssertEqual(s.workers[2].lastHeartbeatAgeMs, 1300)
        XCTAssertEqual(s.workers[0].memoryUsedBytes, 1 << 22)
        XCTAssertEqual(s.workers[0].memoryFreeBytes, 3 << 30)
        XCTAssertEqual(s.workers[1].memoryFreeBytes, 1 << 30, "without a heartbeat figure, the registered memory")
        XCTAssertEqual(s.workers[0].tokensPerSecond, 250, accuracy: 1e-9)  // 2 rows per 8 ms
        XCTAssertEqual(s.jobs.map(\.jobID), ["job-2"], "ended jobs only when asked")
        XCTAssertEqual(s.tokensPerSecond, 12.5)
        XCTAssertEqual(s.planHistory.count, 1)
        XCTAssertEqual(s.planHistory[0].reason, "initial plan over 3 workers")
        XCTAssertTrue(s.planHistory[0].served)
        XCTAssertEqual(s.planHistory[0].unixMs, 1_700_000_001_000)
        XCTAssertEqual(s.planHistory[0].stages.map(\.workerID), ["w1", "w2", "w3"])

        let text = AdminTables.status(try ClusterReport(wire: s))
        XCTAssertTrue(text.contains("cluster: SERVING  plan epoch 1"), text)
        let w3 = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("w3") })
        XCTAssertTrue(w3.contains("[8, 12)") && w3.contains("SUSPECT") && w3.contains("1.3s ago"), String(w3))
        XCTAssertTrue(text.contains("jobs: 0 queued, 1 running"), text)
        XCTAssertTrue(text.contains("initial plan"), text)
    }

    func testALostWorkerIsListedAndTheReplanCarriesItsReason() throws {
        var m = servingMembership()
        m.touch(peer(1), now: 5500)
        m.touch(peer(2), now: 5500)
        let directives = m.tick(now: 5600)
        guard case .plan(let workers)? = directives.last else { return XCTFail("expected a re-plan: \(directives)") }
        _ = m.planned(PipelinePlan(stages: [
            PlannedStage(workerID: workers[0].workerID, layers: LayerRange(0, 6)!, memoryBytes: 1),
            PlannedStage(workerID: workers[1].workerID, layers: LayerRange(6, 12)!, memoryBytes: 1),
        ]), template: template)
        let s = AdminReports.clusterStatus(snapshot(m, now: 5600, unavailable: "re-planning: worker w3 lost"),
                                           includeFinishedJobs: true)
        XCTAssertFalse(s.serving)
        XCTAssertEqual(s.waitingReason, "re-planning: worker w3 lost")
        XCTAssertEqual(s.planEpoch, 2)
        XCTAssertEqual(s.workers.map(\.state), [.loading, .loading])
        XCTAssertEqual(s.lostWorkers.map(\.workerID), ["w3"])
        XCTAssertEqual(s.lostWorkers.first?.health, .lost)
        XCTAssertEqual(s.planHistory.map(\.planEpoch), [1, 2])
        XCTAssertEqual(s.planHistory[1].reason, "worker w3 lost (no heartbeat for 4600 ms)")
        XCTAssertFalse(s.planHistory[1].served)
        let text = AdminTables.status(try ClusterReport(wire: s))
        XCTAssertTrue(text.contains("cluster: WAITING (re-planning: worker w3 lost)"), text)
        XCTAssertTrue(text.contains("lost: w3"), text)
    }

    func testPlanPreviewOfTheCurrentModelAndOfAShapeChangesNothing() throws {
        let m = servingMembership()
        let basis = PlanningBasis(facts: facts, modelName: "m.gguf", contextTokens: 256, batchSequences: 4)
        var request = Caravan_V1_PlanPreviewRequest()
        request.excludeWorkerIds = ["w2"]
        let p = AdminReports.planPreview(request, basis: basis, snapshot: snapshot(m, now: 2300))
        XCTAssertTrue(p.feasible, p.reason)
        XCTAssertEqual(p.stages.map(\.workerID), ["w1", "w3"])
        // The last stage also runs the output matrix (as heavy as one layer here): 7 + 5.
        XCTAssertEqual(p.stages.map { $0.layerEnd - $0.layerStart }, [7, 5])
        XCTAssertEqual(p.stages[0].workerMemoryBytes, 1 << 30)
        // w1 ran 4 layers in 8 ms: 7 layers take 14 ms; w3 has no step times, so no total.
        XCTAssertEqual(p.stages[0].estimatedStepMs, 14, accuracy: 1e-9)
        XCTAssertEqual(p.estimatedTokensPerSecond, 0)
        XCTAssertEqual(p.maxContextTokens, 256)
        XCTAssertEqual(m.phase, servingMembership().phase, "a preview is read-only")

        request.shape = Caravan_V1_ModelShape(ModelFacts(layerCount: 2, layerBytes: [1 << 30, 1 << 30], embeddingBytes: 0, outputBytes: 0,
                                   kvBytesPerTokenPerLayer: 0).modelShape(name: "huge"))
        let huge = AdminReports.planPreview(request, basis: basis, snapshot: snapshot(m, now: 2300))
        XCTAssertFalse(huge.feasible)
        XCTAssertTrue(huge.reason.contains("cannot hold the model"), huge.reason)
        XCTAssertTrue(AdminTables.preview(PlanPreview(wire: huge)).hasPrefix("no plan for huge:"), AdminTables.preview(PlanPreview(wire: huge)))
        XCTAssertTrue(AdminTables.preview(PlanPreview(wire: p)).contains("w1      [0, 7)"), AdminTables.preview(PlanPreview(wire: p)))
    }

    func testTableAlignsColumnsAndFormatsSizesAndAges() {
        XCTAssertEqual(AdminTables.table(["A", "LONG"], [["xyz", "1"], ["q", ""]]), "A    LONG\nxyz  1\nq")
        XCTAssertEqual(AdminTables.bytes(32 << 30), "32.0 GiB")
        XCTAssertEqual(AdminTables.bytes(3 << 19), "1.5 MiB")
        XCTAssertEqual(AdminTables.bytes(0), "-")
        XCTAssertEqual(AdminTables.age(ms: 850), "850ms")
        XCTAssertEqual(AdminTables.age(ms: 12_400), "12.4s")
        XCTAssertEqual(AdminTables.age(ms: 200_000), "3m20s")
        XCTAssertEqual(AdminTables.age(ms: 7_500_000), "2h05m")
    }
}
