import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Workers without the model file pull their layers from the coordinator (real processes, CURVE):
/// the cluster's greedy output equals the single-node engine's, and a second start reuses the
/// cached blocks instead of downloading them again.
final class LayerPullClusterTests: XCTestCase {
    private func pulled(_ cluster: ClusterProcesses, worker i: Int) throws -> (downloaded: Int, reused: Int, needed: Int) {
        let log = "worker-\(i).log"
        if let line = cluster.log(log).split(separator: "\n").first(where: { $0.contains("layers pulled") }) { print("worker \(i): \(line)") }
        let downloaded = try cluster.waitForLog(log, "downloaded_bytes=([0-9]+)", timeout: .seconds(5))
        let reused = try cluster.waitForLog(log, "reused_bytes=([0-9]+)", timeout: .seconds(5))
        let needed = try cluster.waitForLog(log, "needed_bytes=([0-9]+)", timeout: .seconds(5))
        return (Int(downloaded) ?? -1, Int(reused) ?? -1, Int(needed) ?? -1)
    }

    func testWorkersWithoutTheModelPullTheirLayersAndReuseTheCache() async throws {
        let model = try TestModel.requirePath()
        let caches = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-layer-caches-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: caches) }
        let context = try Context()
        let reference = try EngineReference.load()

        // Worker 0 holds the file (first stage); workers 1 (middle) and 2 (last, output tied to the
        // embedding) have none and pull their layers, sharing one cache directory (they take turns
        // on its lock; the second reuses the header blocks the first pulled).
        func startCluster() throws -> ClusterProcesses {
            let c = try ClusterProcesses()
            do {
                try c.start(workers: 3, model: model, extraCoordinatorArguments: ["--activation-dtype", "f32"],
                            extraWorkerArguments: { i in i == 0 ? [] : ["--cache-dir", caches.path] },
                            withoutModel: [1, 2], oneByOne: true)
            } catch {
                c.stop()
                throw error
            }
            return c
        }

        let first = try startCluster()
        defer {
            first.stop()
            try? FileManager.default.removeItem(at: first.directory)
        }
        XCTAssertFalse(first.log("worker-0.log").contains("pulling layers"), "a worker with the file loads it")
        let middle = try pulled(first, worker: 1)
        let last = try pulled(first, worker: 2)
        XCTAssertGreaterThan(middle.needed, 10 << 20)
        XCTAssertGreaterThan(last.needed, middle.needed, "the last stage also needs the (tied) embedding")
        XCTAssertLessThan(last.needed, 98_362_432 * 3 / 4, "only the stage's bytes are pulled, not the whole file")
        XCTAssertLessThan(middle.downloaded + last.downloaded, middle.needed + last.needed,
                          "the worker pulling second reuses the header blocks of the first")
        XCTAssertEqual(middle.downloaded + middle.reused, middle.needed)
        XCTAssertTrue(first.log("coordinator.log").contains("a worker is pulling model bytes"))
        XCTAssertFalse(first.log("coordinator.log").contains("re-planning"), "no worker looked lost while pulling")
        let client = try JobClient(context: context, endpoint: first.clientsEndpoint, serverKey: first.coordinatorKey)
        let jobs = reference.greedy.prefix(3).enumerated().map { i, g in
            JobClient.submit(prompt: g.prompt_ids, sampling: .greedy(16), id: "pull\(i)")
        }
        let results = try await client.run(jobs)
        for (i, g) in reference.greedy.prefix(3).enumerated() {
            let r = try XCTUnwrap(results["pull\(i)"])
            XCTAssertNil(r.error, "job \(i)")
            let local = try ClusterTests.localGreedy(g.prompt_ids, count: 16)
            XCTAssertFalse(r.tokens.isEmpty)
            XCTAssertEqual(r.tokens, Array(local.prefix(r.tokens.count)), "prompt \(i): \(g.prompt)")
        }
        try await probeModelSource(first, context: context)
        first.stop()

        // Second start: the same stages come from the caches.
        let second = try startCluster()
        defer {
            second.stop()
            try? FileManager.default.removeItem(at: second.directory)
        }
        for i in [1, 2] {
            let again = try pulled(second, worker: i)
            XCTAssertEqual(again.downloaded, 0, "worker \(i) downloads nothing on its second start")
            XCTAssertEqual(again.reused, i == 1 ? middle.needed : last.needed, "worker \(i) reuses every block it needs")
        }
        let again = try JobClient(context: context, endpoint: second.clientsEndpoint, serverKey: second.coordinatorKey)
        let france = reference.greedy[0]
        let r = try await again.run([JobClient.submit(prompt: france.prompt_ids, sampling: .greedy(8), id: "cached")])
        XCTAssertEqual(r["cached"]?.tokens, try ClusterTests.localGreedy(france.prompt_ids, count: 8))
    }

    /// Garbage and bad requests on the coordinator's model source are answered with errors or
    /// dropped; the coordinator keeps running and serving. It answers registered workers only: a
    /// listed worker key that never registered is refused (`forbidden`).
    private func probeModelSource(_ cluster: ClusterProcesses, context: Context) async throws {
        let endpoint = try cluster.waitForLog("coordinator.log", "model_source=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        let loop = try EventLoop(context: context, name: "model-source-probe")
        defer { loop.shutdown() }
        let codec = WireCodec()
        let unregistered = try cluster.makeKey("unregistered-worker.key", listIn: cluster.authorizedWorkers)
        let outsider = try AsyncSocket(loop: loop, type: .dealer) { s in
            try s.apply(.curveClient(keys: unregistered, serverPublicKey: cluster.coordinatorKey))
            try s.connect(endpoint)
        }
        try await outsider.send(try codec.encode(.modelInfoRequest(.with { $0.sha256 = String(repeating: "0", count: 64) }), requestID: 4))
        guard case .message(.error(let refusal), 4) = try codec.decode(try await outsider.receive(timeout: .seconds(10))) else {
            return XCTFail("an unregistered worker key was served")
        }
        XCTAssertEqual(refusal.code, "forbidden", refusal.message)
        await outsider.close()
        // The probe speaks with a registered worker's key (worker 0 runs with it).
        let keys = try cluster.makeKey("worker-0.key", listIn: nil)
        let socket = try AsyncSocket(loop: loop, type: .dealer) { s in
            try s.apply(.curveClient(keys: keys, serverPublicKey: cluster.coordinatorKey))
            try s.connect(endpoint)
        }
        let sha = try XCTUnwrap(cluster.log("worker-1.log").firstMatch(of: /([0-9a-f]{64})\.gguf/)?.1).description
        func ask(_ offset: UInt64, _ length: UInt32, sha: String) async throws -> Inbound {
            try await socket.send(try codec.encode(.modelChunkRequest(.with {
                $0.sha256 = sha
                $0.offset = offset
                $0.length = length
            }), requestID: 5))
            return try codec.decode(try await socket.receive(timeout: .seconds(10)))
        }
        for (offset, length, hash, code) in [(UInt64(98_362_432), UInt32(1), sha, "invalid_request"),  // past the end
                                              (0, UInt32(64 << 20), sha, "invalid_request"),            // over the chunk limit
                                              (UInt64.max - 1, UInt32(16), sha, "invalid_request"),      // overflowing
                                              (0, UInt32(16), String(repeating: "0", count: 64), "not_found")] {
            guard case .message(.error(let e), 5) = try await ask(offset, length, sha: hash) else {
                return XCTFail("expected an error reply for [\(offset), +\(length))")
            }
            XCTAssertEqual(e.code, code, e.message)
        }
        for garbage: [[UInt8]] in [[[0xde, 0xad]], [[]], [Array(repeating: 0xFF, count: 300)], [[1], [2], [3]]] {
            try await socket.send(garbage, timeout: .seconds(5))
        }
        while (try? await socket.receive(timeout: .milliseconds(300))) != nil {}
        guard case .modelChunk(let chunk, 5) = try await ask(0, 4, sha: sha) else { return XCTFail("expected a chunk") }
        XCTAssertEqual(chunk.payload.bytes, Array("GGUF".utf8), "a valid request is still served")
        await socket.close()
        XCTAssertTrue(cluster.allRunning)
    }
}
