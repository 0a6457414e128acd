import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// A cluster whose workers cannot hold the model: the coordinator says so with numbers and refuses
/// jobs with that reason (plain TCP mode).
final class ClusterPlanningTests: XCTestCase {
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
