import Foundation
import XCTest
import ZeroMQ

/// `caravanctl status`, `plan` and `keygen` against the shared 3-worker cluster of ``ClusterTests``.
extension ClusterTests {
    private func ctl(_ cluster: ClusterProcesses, _ arguments: [String], connect: Bool = true) throws -> CLIRun.Output {
        let connection = connect ? ["--clients", cluster.clientsEndpoint, "--coordinator-key=\(cluster.coordinatorKey)",
                                    "--key-file", cluster.adminKeyFile] : []
        return try CLIRun.run(cluster.binaries.appendingPathComponent("caravanctl"), arguments + connection,
                              in: cluster.directory, timeout: 30)
    }

    private func shared() throws -> ClusterProcesses {
        if let error = Self.shared.startError { XCTFail("cluster did not start: \(error)") }
        return try XCTUnwrap(Self.shared.cluster)
    }

    /// The status table lists the three workers with contiguous layer ranges covering the model,
    /// and the initial plan; `--json` says the same.
    func testAdminStatusShowsWorkersWithLayerRanges() throws {
        let cluster = try shared()
        let out = try ctl(cluster, ["status"])
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertTrue(out.stdout.hasPrefix("cluster: SERVING"), out.stdout)
        var ranges: [(Int, Int)] = []
        for i in 0..<3 {
            let line = try XCTUnwrap(out.stdout.split(separator: "\n").first { $0.hasPrefix("worker-\(i) ") }, out.stdout)
            XCTAssertTrue(line.contains("ready") && line.contains("healthy"), String(line))
            let m = try XCTUnwrap(line.firstMatch(of: /\[(\d+), (\d+)\)/), String(line))
            ranges.append((Int(m.1)!, Int(m.2)!))
        }
        ranges.sort { $0.0 < $1.0 }
        XCTAssertEqual(ranges.first?.0, 0)
        XCTAssertEqual(ranges.last?.1, 30, "SmolLM2-135M has 30 blocks")
        for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.1, b.0, "contiguous stages") }
        XCTAssertTrue(out.stdout.contains("initial plan"), out.stdout)

        // After a job, every worker's heartbeats carry its step count and time.
        let job = try ctl(cluster, ["generate", "--prompt", "Hi", "--max-tokens", "3", "--temperature", "0"])
        XCTAssertEqual(job.status, 0, job.stderr)
        // The next heartbeats (every 0.25 s) bring them: asked until every worker shows them, at most 10 s.
        var object: [String: Any] = [:]
        var workers: [[String: Any]] = []
        let deadline = Date().addingTimeInterval(10)
        repeat {
            let json = try ctl(cluster, ["status", "--json", "--finished"])
            XCTAssertEqual(json.status, 0, json.stderr)
            object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            workers = try XCTUnwrap(object["workers"] as? [[String: Any]])
            if workers.count == 3, workers.allSatisfy({ ($0["steps_run"] as? Int ?? 0) > 0 && ($0["recent_step_ms"] as? Double ?? 0) > 0 }) {
                break
            }
            Thread.sleep(forTimeInterval: 0.2)
        } while Date() < deadline
        XCTAssertEqual(Set(workers.compactMap { $0["worker_id"] as? String }), ["worker-0", "worker-1", "worker-2"])
        XCTAssertEqual(workers.compactMap { $0["layer_end"] as? Int }.max(), 30)
        for w in workers {
            XCTAssertGreaterThan(w["steps_run"] as? Int ?? 0, 0, "\(w)")
            XCTAssertGreaterThan(w["recent_step_ms"] as? Double ?? 0, 0, "\(w)")
            XCTAssertGreaterThan(w["memory_used_bytes"] as? Int ?? 0, 0, "\(w)")
        }
        XCTAssertEqual(object["serving"] as? Bool, true)
        XCTAssertFalse((object["jobs"] as? [[String: Any]] ?? []).isEmpty, "--finished lists the ended job")

        let plan = try ctl(cluster, ["plan", "--exclude", "worker-2"])
        XCTAssertEqual(plan.status, 0, plan.stderr)
        // Two stages covering [0, 30) contiguously; the last one, which also runs the output matrix
        // (49152 x 576, the multiply-adds of 8 blocks), takes fewer layers.
        let cut = (1..<30).first { plan.stdout.contains("[0, \($0))") && plan.stdout.contains("[\($0), 30)") }
        XCTAssertNotNil(cut, plan.stdout)
        XCTAssertGreaterThan(cut ?? 0, 15, plan.stdout)
        XCTAssertFalse(plan.stdout.contains("worker-2"), plan.stdout)
    }

    /// `keygen` writes a secret key (0600) and its public key; the pair matches.
    func testAdminKeygenWritesAPrivateKeyPair() throws {
        let cluster = try shared()
        let file = cluster.directory.appendingPathComponent("keys/client.key").path
        let out = try ctl(cluster, ["keygen", file], connect: false)
        XCTAssertEqual(out.status, 0, out.stderr)
        let printed = out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(printed.count, 40)
        let secret = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try CurveKeyPair.publicKey(forSecretKey: secret), printed)
        XCTAssertEqual(try String(contentsOfFile: file + ".pub", encoding: .utf8), printed + "\n")
        for path in [file, file + ".pub"] {
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            XCTAssertEqual(mode, 0o600, path)
        }
        XCTAssertNotEqual(try ctl(cluster, ["keygen", file], connect: false).status, 0, "refuses to overwrite")
    }
}
