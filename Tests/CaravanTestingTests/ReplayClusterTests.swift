import CaravanCore
import CaravanTesting
import CaravanWire
import XCTest

/// After a fault, the replay recomputes only what was lost (issue 13): survivors keep the KV of
/// the layers they ran and the outputs they sent on, and only the new owners of the lost layers
/// recompute, with the output of a fault-free run; with the lost stage's KV rows mirrored to
/// them (workers with standby budgets), nothing is recomputed at all.
final class ReplayClusterTests: XCTestCase {
    static let model = Result { try TinyModel().write() }
    static let prompts: [[Int32]] = ["Once upon a time,", "The capital of France is"].map { Array($0.utf8).map(Int32.init) }

    /// Without standby budgets nothing is mirrored: the new owners recompute the lost layers.
    func testKillingTheMiddleStageReplaysOnlyItsLayers() async throws {
        try await killTheMiddleStage(mirrored: false)
    }

    /// With them (the workers have the file: their parts of the neighbours' layers are held from
    /// the start), the survivors adopt the lost stage's mirrored KV rows and the jobs resume
    /// where they stopped, recomputing at most the step the lost stage had not mirrored yet.
    func testKillingTheMiddleStageWithMirroredKVResumesWhereItStopped() async throws {
        try await killTheMiddleStage(mirrored: true)
    }

    private func killTheMiddleStage(mirrored: Bool) async throws {
        let cluster = InProcessCluster(modelPath: try Self.model.get(), workers: 3)
        defer { cluster.stop() }
        try cluster.start(workers: Array(repeating: .init(standbyBudget: mirrored ? 1 << 30 : 0), count: 3))
        let status = try await cluster.waitUntilServing()
        let stages = status.workers.filter { $0.layerEnd > $0.layerStart }.sorted { $0.stageIndex < $1.stageIndex }
        XCTAssertEqual(stages.count, 3)
        let middle = stages[1]
        let jobs = Self.prompts.enumerated().map { i, p in InProcessClient.job(prompt: p, tokens: 40, id: "greedy-\(i)") }
        let expected = try await SingleProcessReference.generate(modelPath: try Self.model.get(), jobs: jobs)

        var killed = false
        let results = try await cluster.client().run(jobs) { _, results in
            guard !killed, results.values.reduce(0, { $0 + $1.tokens.count }) >= 8 else { return }
            killed = true
            cluster.kill(middle.workerID)
        }
        XCTAssertTrue(killed)
        for job in jobs {
            let r = try XCTUnwrap(results[job.clientRequestID])
            XCTAssertNil(r.error)
            XCTAssertEqual(r.tokens, expected[job.clientRequestID], "\(job.clientRequestID): the fault-free tokens\n\(cluster.logs.text.suffix(3000))")
        }

        // One re-plan; it keeps both survivors and moves no layer either held.
        let after = try await cluster.waitUntilServing(after: status.planEpoch)
        XCTAssertEqual(after.planEpoch, status.planEpoch + 1, "one fault, one re-plan")
        let survivors = after.workers.filter { $0.layerEnd > $0.layerStart }
        XCTAssertEqual(Set(survivors.map(\.workerID)), [stages[0].workerID, stages[2].workerID])
        for old in [stages[0], stages[2]] {
            let new = try XCTUnwrap(survivors.first { $0.workerID == old.workerID })
            XCTAssertTrue(new.layerStart <= old.layerStart && new.layerEnd >= old.layerEnd,
                          "\(old.workerID) keeps [\(old.layerStart), \(old.layerEnd)), runs [\(new.layerStart), \(new.layerEnd))")
        }

        let totals = cluster.replayTotals
        XCTAssertTrue(cluster.logs.contains("layer-positions recomputed (full replay would be"))
        print("killed the middle stage (mirrored: \(mirrored)): replay recomputed \(totals.recomputed) layer-positions (full replay: \(totals.full))")
        let lost = UInt64(middle.layerEnd - middle.layerStart)
        guard !mirrored else {
            // Every stage held the committed positions, but for a step the lost stage computed and
            // had not mirrored yet when it died (its rows go out after its output): resumed there,
            // at most that one position per job recomputed, in the lost layers.
            XCTAssertLessThanOrEqual(totals.recomputed, UInt64(jobs.count) * lost, cluster.logs.text.suffix(3000).description)
            XCTAssertGreaterThan(totals.full, 0)
            XCTAssertTrue(cluster.logs.contains("sequences resume where every stage holds them"), cluster.logs.text.suffix(3000).description)
            return
        }
        // The replay recomputed the lost layers for every committed position, nothing else.
        XCTAssertGreaterThan(totals.positions, 0, "the jobs were replayed\n\(cluster.logs.text.suffix(3000))")
        XCTAssertEqual(totals.recomputed, lost * totals.positions)
        XCTAssertEqual(totals.full, UInt64(TinyModel().layers) * totals.positions)
        XCTAssertLessThan(totals.recomputed, totals.full)
    }

    func testANewWorkerTakingAWholeRangeGivesTheSameOutput() async throws {
        let cluster = InProcessCluster(modelPath: try Self.model.get(), workers: 3)
        defer { cluster.stop() }
        try cluster.start(workers: 3)
        let status = try await cluster.waitUntilServing()
        let stages = status.workers.filter { $0.layerEnd > $0.layerStart }.sorted { $0.stageIndex < $1.stageIndex }
        // Steps slowed down (each hop from the first stage 5 ms late) so the job still runs when
        // the newcomer is planned in.
        cluster.hub.setFault(from: stages[0].workerID, to: stages[1].workerID, .delay(.milliseconds(5)))
        let jobs = [InProcessClient.job(prompt: Self.prompts[0], tokens: 200, id: "long")]
        let expected = try await SingleProcessReference.generate(modelPath: try Self.model.get(), jobs: jobs)

        var newcomer: String?
        let results = try await cluster.client().run(jobs, timeout: .seconds(60)) { _, results in
            guard newcomer == nil, results.values.reduce(0, { $0 + $1.tokens.count }) >= 4 else { return }
            newcomer = try? cluster.addWorker()
        }
        let r = try XCTUnwrap(results["long"])
        XCTAssertNil(r.error)
        XCTAssertEqual(r.tokens, expected["long"], "the fault-free tokens\n\(cluster.logs.text.suffix(3000))")
        let after = try await cluster.waitUntilServing(after: status.planEpoch)
        let joined = try XCTUnwrap(after.workers.first { $0.workerID == newcomer })
        XCTAssertGreaterThan(joined.layerEnd, joined.layerStart, "the newcomer runs layers")
        // The newcomer recomputed its whole range for the replayed positions; the others at most theirs.
        let totals = cluster.replayTotals
        XCTAssertGreaterThan(totals.positions, 0, "the job was replayed\n\(cluster.logs.text.suffix(3000))")
        XCTAssertGreaterThanOrEqual(totals.recomputed, UInt64(joined.layerEnd - joined.layerStart) * totals.positions)
        XCTAssertLessThanOrEqual(totals.recomputed, totals.full)
    }
}
