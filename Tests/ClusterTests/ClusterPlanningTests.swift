import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// A cluster whose workers cannot hold the model: the coordinator says so with numbers and refuses
/// jobs with that reason (plain TCP mode).
final class ClusterPlanningTests: XCTestCase {
    /// A worker killed mid-service: its jobs fail, the coordinator re-plans over the worker left
    /// (new epoch) and serves again with the same tokens.
    func testLostWorkerMakesTheCoordinatorReplan() async throws {
        let cluster = try ClusterProcesses()
        defer {
            cluster.stop()
            try? FileManager.default.removeItem(at: cluster.directory)
        }
        let model = try TestModel.requirePath()
        try cluster.start(workers: 2, model: model, extraCoordinatorArguments: ["--activation-dtype", "f32"])
        kill(cluster.workers[1].processIdentifier, SIGKILL)
        _ = try cluster.waitForLog("coordinator.log", "(re-planning)", timeout: .seconds(30))
        _ = try cluster.waitForLog("coordinator.log", "epoch=2 lanes=(1)", timeout: .seconds(30))
        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        let france = try EngineReference.load().greedy[0]
        let r = try await client.run([JobClient.submit(prompt: france.prompt_ids, sampling: {
            var s = Caravan_V1_SamplingParameters()
            s.maxTokens = 8
            return s
        }(), id: "after")], timeout: .seconds(60))
        XCTAssertNil(r["after"]?.error)
        XCTAssertEqual(r["after"]?.tokens, try ClusterTests.localGreedy(france.prompt_ids, count: 8))
        XCTAssertTrue(cluster.coordinator?.isRunning ?? false)
        XCTAssertTrue(cluster.workers[0].isRunning)
    }

    func testTooLittleMemoryIsRefusedWithNumbers() async throws {
        let cluster = try ClusterProcesses()
        defer {
            cluster.stop()
            try? FileManager.default.removeItem(at: cluster.directory)
        }
        try cluster.startInsecure(model: try TestModel.requirePath(), memoryMiB: 40)
        let reason = try cluster.waitForLog("coordinator.log", "cannot serve: (.*)", timeout: .seconds(60))
        XCTAssertTrue(reason.contains("cannot hold the model"), reason)
        XCTAssertTrue(reason.contains("small 40 MiB"), reason)

        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: nil)
        let r = try await client.run([JobClient.submit(prompt: [1, 2, 3], sampling: Caravan_V1_SamplingParameters(), id: "x")],
                                     timeout: .seconds(30))
        let error = try XCTUnwrap(r["x"]?.error)
        XCTAssertTrue(error.contains("cannot hold the model"), error)
        XCTAssertTrue(cluster.allRunning, "both daemons keep running")
    }
}
