import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Removing a key from an allow-list takes effect on connections already open (issue 14): ZAP
/// checks a key only when a connection is made, so the coordinator checks every message against
/// the lists as they are now. On a real CURVE coordinator with two workers and a client list: a
/// client whose key is removed gets its next submit on the same connection refused; a worker whose
/// key is removed is dropped from the membership and the cluster re-plans without it.
final class RevocationTests: XCTestCase {
    static let shared = SharedCluster()
    nonisolated(unsafe) static var carol: CurveKeyPair?

    override class func setUp() {
        super.setUp()
        shared.start { c in carol = try c.startWithClientList(workers: 2, clients: ["carol"])[0] }
    }

    override class func tearDown() {
        shared.stop()
        super.tearDown()
    }

    /// Rewrites `file` without the lines naming `key`.
    private func remove(_ key: String, from file: URL) throws {
        let text = try String(contentsOf: file, encoding: .utf8)
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix(key) }
        XCTAssertLessThan(kept.count, text.split(separator: "\n", omittingEmptySubsequences: false).count, "\(key) was not listed")
        try kept.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
    }

    func testARemovedClientKeysNextSubmitOnTheSameConnectionIsRefused() async throws {
        let (cluster, context) = try Self.shared.running()
        let carol = try XCTUnwrap(Self.carol)
        let client = try JobClient(context: context, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey, keys: carol)
        let before = try await client.run([JobClient.submit(prompt: [1, 2, 3], sampling: .greedy(3), id: "listed")])
        XCTAssertNil(before["listed"]?.error)
        XCTAssertEqual(before["listed"]?.tokens.count, 3)

        func acceptedJobs() -> Int { cluster.log("coordinator.log").split(separator: "\n").filter { $0.contains("job accepted") }.count }
        let acceptedBefore = acceptedJobs()
        try remove(carol.publicKey, from: cluster.authorizedClients)
        let reply = try? await client.request(.jobSubmit(JobClient.submit(prompt: [1, 2, 3], sampling: .greedy(3), id: "removed")))
        guard case .error(let refused)? = reply else {
            return XCTFail("the removed client's submit was not refused: \(String(describing: reply))")
        }
        XCTAssertEqual(refused.code, "forbidden")
        XCTAssertTrue(refused.message.contains("authorized_clients"), refused.message)
        XCTAssertEqual(acceptedJobs(), acceptedBefore, "the removed client's job was accepted")
        XCTAssertTrue(cluster.allRunning)
    }

    func testARemovedWorkerKeyDropsTheWorkerAndTheClusterServesWithoutIt() async throws {
        let (cluster, context) = try Self.shared.running()
        let key = cluster.workerDataKeys[1]
        try remove(key, from: cluster.authorizedWorkers)
        let line = try cluster.waitForLog("coordinator.log", "(.*worker removed: its key is no longer in the worker allow-list.*)",
                                          timeout: .seconds(10))
        XCTAssertTrue(line.contains("worker=worker-1"), line)
        XCTAssertTrue(line.contains("key=\(key)"), line)
        _ = try cluster.waitForLog("coordinator.log", "(worker-1's key was removed from the worker allow-list)", timeout: .seconds(5))
        // The next plan runs on worker-0 alone; a job runs on it.
        let admin = try JobClient(context: context, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey,
                                  keys: try cluster.adminKeys())
        let deadline = ContinuousClock.now + .seconds(30)
        var workers: [String] = []
        while ContinuousClock.now < deadline {
            if case .clusterStatus(let s) = try await admin.request(.clusterStatusRequest(Caravan_V1_ClusterStatusRequest())) {
                workers = s.workers.map(\.workerID)
                if workers == ["worker-0"], s.serving { break }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        XCTAssertEqual(workers, ["worker-0"], "the removed worker is still a member")
        let r = try await admin.run([JobClient.submit(prompt: [1, 2, 3], sampling: .greedy(3), id: "after-revoke")],
                                    timeout: .seconds(60))
        XCTAssertNil(r["after-revoke"]?.error)
        XCTAssertEqual(r["after-revoke"]?.tokens.count, 3)
    }
}
