import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Issue 13's fault runs on real processes: three workers without the model file (each pulls its
/// layers from the coordinator into a layer cache of its own), started one by one (join order =
/// stage order), on a coordinator with F32 activations (the pipeline computes what one node
/// does) and a quick heartbeat (every 0.2 s, lost after 1.5 s). A test runs its jobs once without
/// a fault (the reference), then again with a fault injected mid-job, and compares the two.
final class PullingCluster {
    let cluster: ClusterProcesses
    /// The workers' layer caches (`w0`, `w1`, `w2`), removed by ``stop()``.
    let caches: URL
    let client: JobClient

    /// Starts the cluster; `workerArguments` are added to every worker's.
    init(workerArguments: [String] = [], coordinatorArguments: [String] = []) throws {
        caches = FileManager.default.temporaryDirectory
            .appendingPathComponent("caravan-pulling-caches-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        cluster = try ClusterProcesses()
        do {
            try cluster.start(workers: 3, model: try TestModel.requirePath(), extraCoordinatorArguments: [
                "--activation-dtype", "f32", "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1.5",
            ] + coordinatorArguments, extraWorkerArguments: { [caches] i in
                ["--cache-dir", caches.appendingPathComponent("w\(i)").path] + workerArguments
            }, withoutModel: [0, 1, 2], oneByOne: true)
            client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        } catch {
            cluster.stopAndRemove()
            try? FileManager.default.removeItem(at: caches)
            throw error
        }
    }

    /// Stops every process and removes the cluster's directory and the layer caches.
    func stop() {
        cluster.stopAndRemove()
        try? FileManager.default.removeItem(at: caches)
    }

    /// Runs the jobs `jobs(tag)` (client request ids `"<tag>-<name>"`) and returns their results
    /// by name. With `fault`, calls it once, as soon as the jobs have streamed `afterTokens`
    /// tokens in all (mid-job), from the event loop: it must not block.
    func run(_ jobs: (_ tag: String) throws -> [Caravan_V1_JobSubmit], tag: String, timeout: Duration = .seconds(120),
             afterTokens: Int = 12, fault: (() -> Void)? = nil) async throws -> [String: JobClient.Result] {
        var injected = false
        let results = try await client.run(try jobs(tag), timeout: timeout) { _, results in
            guard let fault, !injected, results.values.reduce(0, { $0 + $1.tokens.count }) >= afterTokens else { return }
            injected = true
            fault()
        }
        if fault != nil { XCTAssertTrue(injected, "the fault was injected mid-job") }
        return Dictionary(uniqueKeysWithValues: results.map { (String($0.key.dropFirst(tag.count + 1)), $0.value) })
    }

    /// Every job of `faulty` ended with its `reference` tokens and text, and none failed.
    static func assertSame(_ faulty: [String: JobClient.Result], as reference: [String: JobClient.Result],
                           file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(reference.isEmpty, "no reference jobs", file: file, line: line)
        for (id, expected) in reference {
            XCTAssertNil(expected.error, "reference \(id)", file: file, line: line)
            XCTAssertNil(faulty[id]?.error, "job \(id) failed: \(faulty[id]?.error ?? "")", file: file, line: line)
            XCTAssertEqual(faulty[id]?.tokens, expected.tokens, "job \(id) lost, doubled or changed tokens", file: file, line: line)
            XCTAssertEqual(faulty[id]?.text, expected.text, "job \(id) text differs", file: file, line: line)
        }
    }

    /// The coordinator's log (printed too when `CARAVAN_TEST_PRINT_LOGS` is set).
    func coordinatorLog() -> String {
        let log = cluster.log("coordinator.log")
        if ProcessInfo.processInfo.environment["CARAVAN_TEST_PRINT_LOGS"] != nil { print(log) }
        return log
    }

    /// Every `plan` line of a coordinator's `log`.
    static func planLines(_ log: String) -> [Substring] {
        log.split(separator: "\n").filter { $0.hasSuffix("] plan") }
    }
}
