import CaravanCore
import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Faults during generation on real processes (loopback) beyond the test bed's (`FaultTests`: kill,
/// freeze, cut, add, drain): a coordinator crash, with the job continued by a new process and the
/// client re-attaching. Every job must end with exactly the tokens of the fault-free run. (A slow
/// worker losing its layers runs in one process: `InProcessClusterTests`.)
final class RecoveryTests: XCTestCase {

    /// Four concurrent jobs, greedy and seeded sampling.
    private static func jobs(tokens: UInt32, tag: String) throws -> [Caravan_V1_JobSubmit] {
        let p = try EngineReference.load().greedy.map(\.prompt_ids)
        return [
            JobClient.submit(prompt: p[0], sampling: .seeded(0, seed: 1, tokens: tokens), id: "\(tag)-greedy-a"),
            JobClient.submit(prompt: p[1], sampling: .seeded(0, seed: 1, tokens: tokens), id: "\(tag)-greedy-b"),
            JobClient.submit(prompt: p[2], sampling: .seeded(0.9, seed: 77, tokens: tokens), id: "\(tag)-seeded-a"),
            JobClient.submit(prompt: p[0], sampling: .seeded(0.7, seed: 4242, tokens: tokens), id: "\(tag)-seeded-b"),
        ]
    }

    private func cluster(workers: Int) throws -> ClusterProcesses {
        let c = try ClusterProcesses()
        try c.start(workers: workers, model: try TestModel.requirePath(), extraCoordinatorArguments: [
            "--activation-dtype", "f32", "--heartbeat-interval", "0.2", "--heartbeat-timeout", "1.5",
        ])
        return c
    }

    /// The coordinator crashes mid-job; restarted on the same state directory it continues the job,
    /// and a client re-attaching by job id gets exactly the rest of the stream.
    func testACoordinatorRestartContinuesJobsAndClientsReattach() async throws {
        let cluster = try cluster(workers: 2)
        defer { cluster.stopAndRemove() }
        let client = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        let job = try Self.jobs(tokens: 48, tag: "restart")[2]
        let reference = try await client.run([job], timeout: .seconds(120))[job.clientRequestID]!
        XCTAssertEqual(reference.tokens.count, 48)

        var jobID = ""
        // The job belongs to the key that submitted it: the client attaching after the restart
        // uses the same key (another key would be told "not found").
        let ownerKeys = try CurveKeyPair.generate()
        let second = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey,
                                   keys: ownerKeys)
        var before = JobClient.Result()
        // Stops reading at the kill (waiting out a silent stream cost the suite 20 s).
        var killed = false
        try await second.send([job])
        try await second.receiveEvents(until: { killed }, timeout: .seconds(20), operation: "10 tokens before the crash",
                                       detail: { "\(before.tokens.count) tokens" }) { event in
            if jobID.isEmpty { jobID = event.jobID }
            guard event.clientRequestID == job.clientRequestID,
                  case .success(.token(let t)) = Swift.Result(catching: { () throws(WireError) in try JobEvent(wire: event) }) else { return }
            before.tokens.append(t.id)
            before.text += t.text
            if before.tokens.count >= 10 {
                cluster.killCoordinator()
                killed = true
            }
        }
        XCTAssertFalse(jobID.isEmpty)
        XCTAssertGreaterThanOrEqual(before.tokens.count, 10)
        try cluster.restartCoordinator()
        let third = try JobClient(context: try Context(), endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey,
                                  keys: ownerKeys)
        var attach = Caravan_V1_JobAttach()
        attach.jobID = jobID
        attach.receivedTokens = UInt32(before.tokens.count)
        try await third.socket.send(try third.codec.encode(.jobAttach(attach)), timeout: .seconds(5))
        let rest = try await third.collect([job.clientRequestID], from: [job.clientRequestID: before], timeout: .seconds(120))
        XCTAssertEqual(rest[job.clientRequestID]?.tokens, reference.tokens, "tokens before the crash + after the attach")
        XCTAssertEqual(rest[job.clientRequestID]?.text, reference.text)
    }
}

