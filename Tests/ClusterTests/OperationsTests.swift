import CaravanWire
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GGUF
import TestSupport
import Tokenizer
import XCTest

/// What operators use, against the shared cluster of ``ClusterTests`` (started with default flags,
/// `--metrics` on every daemon, worker-2 joined with `--join TOKEN`): exact tokens by default,
/// the join token, Prometheus metrics, `caravanctl status --watch`.
extension ClusterTests {
    /// Held-out prompts (not the reference fixture's), greedy through a cluster started with
    /// default flags: the same tokens as the single-node engine.
    func testDefaultFlagsGiveTheSingleNodeTokens() async throws {
        let (cluster, client) = try running()
        XCTAssertFalse(cluster.log("coordinator.log").isEmpty)
        XCTAssertTrue(cluster.log("coordinator.log").contains("activations=f32"), "F32 is the default")
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: try TestModel.requirePath()))
        let prompts = [
            "Camels can go without water for days because",
            "The three primary colours are",
            "Here is a short poem about the sea:\n",
            "def add(a, b):\n    return",
            "In 1969, the first people to walk on the Moon",
        ]
        let count = 32
        var jobs: [Caravan_V1_JobSubmit] = []
        var ids: [[Int32]] = []
        for (i, prompt) in prompts.enumerated() {
            let tokens = tokenizer.encode(prompt)
            ids.append(tokens)
            jobs.append(JobClient.submit(prompt: tokens, sampling: .greedy(count), id: "held-out-\(i)"))
        }
        let results = try await client.run(jobs)
        for (i, prompt) in prompts.enumerated() {
            let r = try XCTUnwrap(results["held-out-\(i)"])
            XCTAssertNil(r.error, prompt)
            let local = try Self.localGreedy(ids[i], count: count)
            XCTAssertGreaterThan(r.tokens.count, 0, prompt)
            XCTAssertEqual(r.tokens, Array(local.prefix(r.tokens.count)), "held-out prompt \(i): \(prompt)")
            if r.tokens.count < count { XCTAssertEqual(r.finish, .endOfSequence, prompt) }
        }
    }

    /// worker-2 was started with nothing but `--join TOKEN` (and its model): it registered, got a
    /// stage and serves. The token is `caravan1:` + base64url JSON with the endpoints and key;
    /// `invite` refuses a wildcard endpoint without `--host` and rewrites it with one.
    func testJoinTokenBringsAWorkerIn() throws {
        let (cluster, _) = try running()
        func fields(_ token: String) throws -> [String: String] {
            XCTAssertTrue(token.hasPrefix("caravan1:"), token)
            let payload = token.dropFirst("caravan1:".count).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            let json = try XCTUnwrap(Data(base64Encoded: payload + String(repeating: "=", count: (4 - payload.count % 4) % 4)), token)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [String: String], token)
        }
        XCTAssertEqual(try fields(cluster.joinToken), ["control": cluster.controlEndpoint, "clients": cluster.clientsEndpoint,
                                                       "coordinator_key": cluster.coordinatorKey])

        let arguments = try XCTUnwrap(cluster.workers[2].arguments)
        XCTAssertFalse(arguments.contains { $0.hasPrefix("--coordinator") }, "\(arguments)")
        XCTAssertTrue(arguments.contains("--join"))
        let status = try CLIRun.run(cluster.binaries.appendingPathComponent("caravanctl"), [
            "status", "--clients", cluster.clientsEndpoint, "--coordinator-key=\(cluster.coordinatorKey)",
        ], in: cluster.directory, timeout: 30)
        XCTAssertEqual(status.status, 0, status.stderr)
        let line = try XCTUnwrap(status.stdout.split(separator: "\n").first { $0.hasPrefix("worker-2 ") }, status.stdout)
        XCTAssertTrue(line.contains("ready") && line.contains("healthy") && line.contains("["), String(line))
        XCTAssertTrue(cluster.log("coordinator.log").contains("worker=worker-2"))

        let ctl = cluster.binaries.appendingPathComponent("caravanctl")
        let key = ["--coordinator-key=\(cluster.coordinatorKey)"]
        let wildcard = try CLIRun.run(ctl, ["invite", "--control", "tcp://0.0.0.0:7000"] + key, in: cluster.directory, timeout: 30)
        XCTAssertNotEqual(wildcard.status, 0)
        XCTAssertTrue(wildcard.stderr.contains("--host"), wildcard.stderr)
        let hosted = try CLIRun.run(ctl, ["invite", "--control", "tcp://0.0.0.0:7000", "--host", "10.1.2.3"] + key,
                                    in: cluster.directory, timeout: 30)
        XCTAssertEqual(hosted.status, 0, hosted.stderr)
        XCTAssertTrue(hosted.stderr.contains("caravan-worker --join caravan1:"), hosted.stderr)
        XCTAssertEqual(try fields(hosted.stdout.trimmingCharacters(in: .whitespacesAndNewlines))["control"], "tcp://10.1.2.3:7000")
        // From the coordinator's config file: endpoints, and the key derived from its key file.
        let config = cluster.directory.appendingPathComponent("invite-coordinator.conf")
        try """
            control = tcp://0.0.0.0:7000
            clients = tcp://127.0.0.1:7100
            key-file = \(cluster.directory.appendingPathComponent("coordinator.key").path)
            """.write(to: config, atomically: true, encoding: .utf8)
        let fromConfig = try CLIRun.run(ctl, ["invite", "--coordinator-config", config.path, "--host", "coord.example"],
                                        in: cluster.directory, timeout: 30)
        XCTAssertEqual(fromConfig.status, 0, fromConfig.stderr)
        XCTAssertEqual(try fields(fromConfig.stdout.trimmingCharacters(in: .whitespacesAndNewlines)),
                       ["control": "tcp://coord.example:7000", "clients": "tcp://coord.example:7100",
                        "coordinator_key": cluster.coordinatorKey])
        let noKey = try CLIRun.run(ctl, ["invite", "--key-file", cluster.directory.appendingPathComponent("absent.key").path],
                                   in: cluster.directory, timeout: 30)
        XCTAssertNotEqual(noKey.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: cluster.directory.appendingPathComponent("absent.key").path),
                       "invite never creates a coordinator key")
        // A damaged token stops the worker at once with a clear message.
        let bad = try CLIRun.run(cluster.binaries.appendingPathComponent("caravan-worker"), ["--join", "caravan1:%%%"],
                                 in: cluster.directory, timeout: 30)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("join token is damaged"), bad.stderr)
    }

    /// Every daemon serves Prometheus metrics that `prometheus_client`'s parser reads; one greedy
    /// job moves the coordinator's counters by exactly its tokens, the workers' step and byte
    /// counters, and the HTTP API's request counter.
    func testMetricsEndpointsCountAFinishedJob() async throws {
        let (cluster, client) = try running()
        let pattern = "url=(http://127\\.0\\.0\\.1:[0-9]+/metrics)"
        let coordinator = try cluster.waitForLog("coordinator.log", pattern, timeout: .seconds(10))
        let workers = try (0..<3).map { try cluster.waitForLog("worker-\($0).log", pattern, timeout: .seconds(10)) }
        let (serve, api) = try startServe(cluster, extraArguments: ["--metrics", "127.0.0.1:0"])
        defer {
            if serve.isRunning { kill(serve.processIdentifier, SIGKILL) }
            serve.waitUntilExit()
        }
        let serveMetrics = try cluster.waitForLog("serve.log", pattern, timeout: .seconds(10))
        let urls = [coordinator] + workers + [serveMetrics]
        let before = try MetricsScrape.scrape(urls, in: cluster.directory)

        let prompt: [Int32] = try EngineReference.load().greedy[0].prompt_ids
        let results = try await client.run([JobClient.submit(prompt: prompt, sampling: .greedy(12), id: "metrics")])
        let job = try XCTUnwrap(results["metrics"])
        XCTAssertNil(job.error)
        XCTAssertEqual(job.tokens.count, 12)
        var request = URLRequest(url: try XCTUnwrap(URL(string: api + "/v1/models")))
        request.timeoutInterval = 30
        _ = try await URLSession.shared.data(for: request)
        try await Task.sleep(for: .milliseconds(1600))  // the coordinator refreshes its gauges once a second
        let after = try MetricsScrape.scrape(urls, in: cluster.directory)

        func delta(_ url: String, _ name: String, _ labels: [String: String] = [:]) -> Double {
            (after.value(url, name, labels) ?? .nan) - (before.value(url, name, labels) ?? 0)
        }
        XCTAssertEqual(delta(coordinator, "caravan_tokens_generated_total"), 12)
        XCTAssertEqual(delta(coordinator, "caravan_prompt_tokens_total"), Double(prompt.count))
        XCTAssertEqual(delta(coordinator, "caravan_jobs_submitted_total"), 1)
        XCTAssertEqual(delta(coordinator, "caravan_jobs_ended_total", ["outcome": "finished"]), 1)
        XCTAssertEqual(delta(coordinator, "caravan_jobs_ended_total", ["outcome": "failed"]), 0)
        XCTAssertEqual(delta(coordinator, "caravan_time_to_first_token_seconds_count"), 1)
        XCTAssertEqual(delta(coordinator, "caravan_token_latency_seconds_count"), 11)
        XCTAssertGreaterThan(delta(coordinator, "caravan_time_to_first_token_seconds_sum"), 0)
        XCTAssertGreaterThanOrEqual(delta(coordinator, "caravan_pipeline_step_seconds_count"), 12)
        XCTAssertGreaterThan(delta(coordinator, "caravan_activation_bytes_sent_total", ["peer": "first_stage"]), 0)
        XCTAssertGreaterThan(delta(coordinator, "caravan_activation_bytes_received_total", ["peer": "last_stage"]), 0)
        XCTAssertEqual(after.value(coordinator, "caravan_plans_total", ["purpose": "initial"]), 1)
        XCTAssertEqual(after.value(coordinator, "caravan_serving"), 1)
        XCTAssertEqual(after.value(coordinator, "caravan_jobs", ["state": "running"]), 0)
        XCTAssertEqual(after.value(coordinator, "caravan_workers", ["health": "healthy"]), 3)
        for i in 0..<3 {
            XCTAssertEqual(after.value(coordinator, "caravan_worker_healthy", ["worker": "worker-\(i)"]), 1)
            XCTAssertGreaterThan(after.value(coordinator, "caravan_worker_memory_used_bytes", ["worker": "worker-\(i)"]) ?? 0, 0)
        }
        // Every stage ran the job's steps (a prefill and 11 decode steps, maybe batched with nothing else).
        var hidden = 0.0
        for url in workers {
            XCTAssertGreaterThanOrEqual(delta(url, "caravan_stage_steps_total"), 12, url)
            XCTAssertEqual(delta(url, "caravan_stage_rows_total"), Double(prompt.count + 11), url)
            XCTAssertGreaterThanOrEqual(delta(url, "caravan_stage_step_seconds_count"), 12, url)
            XCTAssertGreaterThan(delta(url, "caravan_activation_bytes_received_total", ["peer": "previous_stage"]), 0, url)
            hidden += delta(url, "caravan_activation_bytes_sent_total", ["peer": "next_stage"])
            XCTAssertEqual(after.value(url, "caravan_worker_ready"), 1, url)
            XCTAssertGreaterThan(after.value(url, "caravan_kv_cache_budget_bytes") ?? 0, 0, url)
            XCTAssertGreaterThan(after.value(url, "caravan_stage_weight_bytes") ?? 0, 0, url)
        }
        // Two of the three stages send F32 hidden rows on: 576 floats per row at least.
        XCTAssertGreaterThanOrEqual(hidden, Double(2 * (prompt.count + 11) * 576 * 4))
        XCTAssertEqual(workers.map { delta($0, "caravan_activation_bytes_sent_total", ["peer": "coordinator"]) }.filter { $0 > 0 }.count, 1,
                       "only the last stage sends results to the coordinator")
        XCTAssertEqual(delta(serveMetrics, "caravan_http_requests_total", ["route": "/v1/models", "method": "GET", "status": "200"]), 1)

        // Every metric the Grafana dashboard in Deploy/ plots is one the daemons serve.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dashboard = try String(contentsOf: root.appendingPathComponent("Deploy/monitoring/grafana-dashboard.json"), encoding: .utf8)
        let served = Set(after.samples.values.joined().map(\.name))
        let plotted = Set(dashboard.matches(of: /caravan_[a-z_]+/).map { String($0.output) })
        XCTAssertGreaterThan(plotted.count, 10)
        for name in plotted.sorted() {
            XCTAssertTrue(served.contains(name), "the dashboard plots \(name), which no daemon serves")
        }
    }

    /// `status --watch` redraws in place on a terminal (cursor home, lines cleared) and prints
    /// frames one after another into a pipe; `--count` ends it.
    func testStatusWatchRedrawsInPlace() throws {
        let (cluster, _) = try running()
        let ctl = cluster.binaries.appendingPathComponent("caravanctl").path
        let watch = ["status", "--watch", "--interval", "0.3", "--count", "3",
                     "--clients", cluster.clientsEndpoint, "--coordinator-key=\(cluster.coordinatorKey)"]
        let piped = try CLIRun.run(URL(fileURLWithPath: ctl), watch, in: cluster.directory, timeout: 30)
        XCTAssertEqual(piped.status, 0, piped.stderr)
        XCTAssertEqual(piped.stdout.components(separatedBy: "cluster: SERVING").count - 1, 3, piped.stdout)
        XCTAssertFalse(piped.stdout.contains("\u{1B}["), "no escape sequences into a pipe")
        // On a terminal (script(1) gives it one): home + clear-to-end-of-line, three times.
        let command = ([ctl] + watch).map { "'\($0)'" }.joined(separator: " ")
        let tty = try CLIRun.run(URL(fileURLWithPath: "/usr/bin/script"), ["-qfec", command, "/dev/null"],
                                 in: cluster.directory, timeout: 30)
        XCTAssertEqual(tty.status, 0, tty.stderr)
        XCTAssertEqual(tty.stdout.components(separatedBy: "\u{1B}[H").count - 1, 3, tty.stdout)
        XCTAssertEqual(tty.stdout.components(separatedBy: "cluster: SERVING").count - 1, 3, tty.stdout)
        XCTAssertTrue(tty.stdout.contains("tokens/s\u{1B}[K"), "each line is cleared to its end: \(tty.stdout)")
    }
}
