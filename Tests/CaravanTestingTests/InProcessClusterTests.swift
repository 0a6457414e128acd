import CaravanCore
import CaravanTesting
import CaravanWire
import XCTest

/// A coordinator and three workers in this process over the in-memory transport: jobs end to end,
/// and faults that used to need processes and sockets.
final class InProcessClusterTests: XCTestCase {
    static let model = Result { try TinyModel().write() }

    static let prompts: [[Int32]] = ["Once upon a time,", "The capital of France is", "caravan"].map { Array($0.utf8).map(Int32.init) }

    func testAJobRunsEndToEndAndGivesTheSingleProcessTokens() async throws {
        let started = ContinuousClock.now
        let cluster = InProcessCluster(modelPath: try Self.model.get(), workers: 3)
        defer { cluster.stop() }
        try cluster.start(workers: 3)
        let status = try await cluster.waitUntilServing()
        XCTAssertEqual(status.workers.filter { $0.layerEnd > $0.layerStart }.count, 3, "three stages")
        let results = try await cluster.client().run(Self.prompts.enumerated().map { i, p in
            InProcessClient.job(prompt: p, tokens: 24, id: "job-\(i)")
        })
        let expected = try await SingleProcessReference.generate(
            modelPath: try Self.model.get(), prompts: Self.prompts, parameters: SamplingParameters(temperature: 0, maxTokens: 24))
        for (i, tokens) in expected.enumerated() {
            let r = try XCTUnwrap(results["job-\(i)"])
            XCTAssertNil(r.error)
            XCTAssertEqual(r.tokens.count, 24)
            XCTAssertEqual(r.tokens, tokens, "job \(i): the cluster's tokens are the single process's")
        }
        // Activations went from stage to stage, not through the coordinator.
        let stages = status.workers.sorted { $0.stageIndex < $1.stageIndex }.map(\.workerID)
        XCTAssertGreaterThan(cluster.hub.delivered(from: stages[0], to: stages[1]), 0)
        XCTAssertGreaterThan(cluster.hub.delivered(from: stages[1], to: stages[2]), 0)
        XCTAssertEqual(cluster.hub.delivered(from: stages[0], to: stages[2]), 0)
        print("in-process cluster: start, 3 jobs x 24 tokens, reference: \(ContinuousClock.now - started)")
    }

    /// Two greedy and two seeded jobs.
    static func jobs(_ tag: String, tokens: UInt32 = 40) -> [Caravan_V1_JobSubmit] {
        [
            InProcessClient.job(prompt: prompts[0], tokens: tokens, id: "\(tag)-greedy-a"),
            InProcessClient.job(prompt: prompts[1], tokens: tokens, id: "\(tag)-greedy-b"),
            InProcessClient.job(prompt: prompts[2], tokens: tokens, temperature: 0.9, seed: 77, id: "\(tag)-seeded-a"),
            InProcessClient.job(prompt: prompts[0], tokens: tokens, temperature: 0.7, seed: 4242, id: "\(tag)-seeded-b"),
        ]
    }

    /// The results by job name without the tag.
    static func untagged<T>(_ results: [String: T], _ tag: String) -> [String: T] {
        Dictionary(uniqueKeysWithValues: results.map { (String($0.key.dropFirst(tag.count + 1)), $0.value) })
    }

    /// Every job of `faulty` has exactly the tokens and text of `reference`, and ran past `after`.
    func assertSameOutput(_ faulty: [String: InProcessClient.Result], _ reference: [String: InProcessClient.Result],
                          after: Int, _ cluster: InProcessCluster, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(reference.count, 4, file: file, line: line)
        for (id, expected) in reference {
            XCTAssertNil(expected.error, "reference \(id)", file: file, line: line)
            XCTAssertGreaterThan(expected.tokens.count, after, "reference \(id) ran past the fault", file: file, line: line)
            XCTAssertNil(faulty[id]?.error, "job \(id) failed: \(faulty[id]?.error ?? "")", file: file, line: line)
            XCTAssertEqual(faulty[id]?.tokens, expected.tokens, "job \(id) lost, doubled or changed tokens\n\(cluster.logs.text.suffix(3000))",
                           file: file, line: line)
            XCTAssertEqual(faulty[id]?.text, expected.text, "job \(id) text", file: file, line: line)
        }
    }

    /// Runs the "kill" jobs and kills worker `middle` once they have `tokens` tokens between them:
    /// their results (untagged) and the time from the kill to their end.
    func runKilling(_ middle: String, after tokens: Int, on cluster: InProcessCluster, client: InProcessClient,
                    file: StaticString = #filePath, line: UInt = #line) async throws -> ([String: InProcessClient.Result], Duration) {
        var killedAt: ContinuousClock.Instant?
        let faulty = Self.untagged(try await client.run(Self.jobs("kill")) { _, results in
            guard killedAt == nil, results.values.reduce(0, { $0 + $1.tokens.count }) >= tokens else { return }
            killedAt = .now
            cluster.kill(middle)
        }, "kill")
        XCTAssertNotNil(killedAt, "the middle stage was killed during generation", file: file, line: line)
        return (faulty, ContinuousClock.now - (killedAt ?? .now))
    }

    /// Starts `cluster` on three workers and runs the reference jobs on it: the serving status, the
    /// middle stage's worker, the client and the reference output.
    func startThreeStages(_ cluster: InProcessCluster) async throws
        -> (status: Caravan_V1_ClusterStatus, middle: String, client: InProcessClient, reference: [String: InProcessClient.Result]) {
        try cluster.start(workers: 3)
        let status = try await cluster.waitUntilServing()
        let middle = try XCTUnwrap(status.workers.first { $0.layerEnd > $0.layerStart && $0.stageIndex == 1 }).workerID
        let client = cluster.client()
        return (status, middle, client, Self.untagged(try await client.run(Self.jobs("ref")), "ref"))
    }

    func testKillingTheMiddleStageMidJobKeepsEveryJobsOutput() async throws {
        let cluster = InProcessCluster(modelPath: try Self.model.get(), workers: 3)
        defer { cluster.stop() }
        let (status, middle, client, reference) = try await startThreeStages(cluster)
        let single = Self.untagged(try await SingleProcessReference.generate(modelPath: try Self.model.get(), jobs: Self.jobs("ref")), "ref")
        for (id, tokens) in single { XCTAssertEqual(reference[id]?.tokens, tokens, "\(id): the single process's tokens") }

        let (faulty, recovery) = try await runKilling(middle, after: 8, on: cluster, client: client)
        assertSameOutput(faulty, reference, after: 8, cluster)
        let after = try await cluster.waitUntilServing(after: status.planEpoch)
        XCTAssertFalse(after.workers.contains { $0.workerID == middle && $0.layerEnd > $0.layerStart }, "the dead worker has no layers")
        print("killed the middle stage (\(middle)) mid-job: the jobs ended \(recovery) later with the same output")
        // Noticed by the heartbeat timeout (400 ms here), well before the step deadline (1 s); the bound
        // leaves room for a loaded machine.
        XCTAssertLessThan(recovery, .seconds(2))
    }

    /// A killed worker's connection closes at once: the coordinator loses it after the connection
    /// grace, long before its heartbeat timeout or a step's deadline (10 s each here, so that
    /// either would fail the bound), and every job keeps its output.
    func testAKilledWorkerIsNoticedByItsClosedConnectionLongBeforeTheHeartbeatTimeout() async throws {
        let cluster = InProcessCluster(modelPath: try Self.model.get(), workers: 3) { c in
            c.heartbeatTimeout = .seconds(10)
            c.stepDeadline = .seconds(10)
            c.connectionGrace = .milliseconds(100)
        }
        defer { cluster.stop() }
        let (_, middle, client, reference) = try await startThreeStages(cluster)

        let (faulty, recovery) = try await runKilling(middle, after: 8, on: cluster, client: client)
        assertSameOutput(faulty, reference, after: 8, cluster)
        XCTAssertTrue(cluster.logs.contains("\(middle)'s connection closed; lost after"), cluster.logs.text.suffix(3000).description)
        let replans = cluster.logs.text.split(separator: "\n").filter { $0.contains("re-planning:") }
        XCTAssertEqual(replans.count, 1, "\(replans)")
        XCTAssertTrue(replans.first?.contains("worker \(middle) lost (its connection closed") ?? false, "\(replans)")
        print("killed \(middle) with a 10 s heartbeat timeout: the jobs ended \(recovery) later")
        XCTAssertLessThan(recovery, .seconds(3), "noticed by the closed connection, not after 10 s")
    }

    /// A worker whose steps take twenty times longer than the other's (its step clock dilated)
    /// loses layers to the other in a re-plan for balance, and every job keeps its output. (The
    /// successor of the process-level test that throttled a worker with SIGSTOP/SIGCONT, which
    /// depended on how loaded the machine was.)
    func testASlowWorkerLosesLayersAndJobsKeepTheirOutput() async throws {
        let cluster = InProcessCluster(modelPath: try Self.model.get(), workers: 2) { c in
            c.rebalance.enabled = true
            c.rebalance.minimumInterval = .milliseconds(100)
            c.rebalance.minimumSteps = 4
            c.rebalance.sustainedSteps = 8
        }
        defer { cluster.stop() }
        try cluster.start(workers: [.init(), .init(stepTimeScale: 20)])
        let slow = InProcessCluster.workerNode(2)
        let status = try await cluster.waitUntilServing()
        let before = try XCTUnwrap(status.workers.first { $0.workerID == slow })
        XCTAssertEqual(before.layerEnd - before.layerStart, 3, "equal speeds registered: an even split")
        let jobs = Self.jobs("slow", tokens: 200)
        let expected = try await SingleProcessReference.generate(modelPath: try Self.model.get(), jobs: jobs)
        let results = try await cluster.client().run(jobs)
        XCTAssertTrue(cluster.logs.contains("worker \(slow) is slow"), cluster.logs.text.suffix(3000).description)
        for job in jobs {
            let r = try XCTUnwrap(results[job.clientRequestID])
            XCTAssertNil(r.error)
            XCTAssertEqual(r.tokens, expected[job.clientRequestID], "\(job.clientRequestID): the single process's tokens")
        }
        let replanned = try await cluster.waitUntilServing(after: status.planEpoch)
        let after = try XCTUnwrap(replanned.workers.first { $0.workerID == slow })
        XCTAssertLessThan(after.layerEnd - after.layerStart, 3, "the slow worker lost layers")
    }
}
