import CaravanClient
import CaravanWire
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// `caravan-openai` as a real process in front of the shared test cluster, spoken to over HTTP.
extension ClusterTests {
    struct HTTPResult {
        var status: Int
        var body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
    }

    /// One request to the server at `base`: `body` (or the raw `bytes`) sent as `contentType`.
    func http(_ base: String, _ method: String, _ path: String, body: String? = nil, bytes: Data? = nil,
              contentType: String = "application/json", bearer: String? = nil) async throws -> HTTPResult {
        var request = URLRequest(url: try XCTUnwrap(URL(string: base + path)))
        request.httpMethod = method
        request.timeoutInterval = 60
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        if let data = bytes ?? body.map({ Data($0.utf8) }) {
            request.httpBody = data
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return HTTPResult(status: (response as? HTTPURLResponse)?.statusCode ?? -1, body: String(decoding: data, as: UTF8.self))
    }

    /// Starts `caravan-openai` in front of `cluster` (log: `log`); returns it and its base URL.
    func startServe(_ cluster: ClusterProcesses, extraArguments: [String] = [], log: String = "serve.log") throws -> (Process, String) {
        let p = Process()
        p.executableURL = cluster.binaries.appendingPathComponent("caravan-openai")
        p.arguments = ["--coordinator", cluster.clientsEndpoint, "--coordinator-key=\(cluster.coordinatorKey)",
                       "--listen", "127.0.0.1:0", "--timeout", "30"] + extraArguments
        let logURL = cluster.directory.appendingPathComponent(log)
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        // (Not the metrics listener's line, whose URL goes on with /metrics.)
        let port = try cluster.waitForLog(log, "url=http://127\\.0\\.0\\.1:([0-9]+)\\s", timeout: .seconds(30))
        return (p, "http://127.0.0.1:\(port)")
    }

    /// Models, a greedy completion equal to `caravan generate`'s, a streamed chat whose deltas
    /// add up to the non-streamed answer, OpenAI error JSON for bad input; the server survives
    /// garbage and stops on SIGTERM.
    func testOpenAIServe() async throws {
        let (cluster, _) = try running()
        let (serve, base) = try startServe(cluster)
        defer {
            if serve.isRunning { kill(serve.processIdentifier, SIGKILL) }
            serve.waitUntilExit()
        }

        let models = try await http(base, "GET", "/v1/models")
        XCTAssertEqual(models.status, 200, models.body)
        let ids = (models.json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
        XCTAssertEqual(ids, ["SmolLM2-135M-Instruct.Q4_1.gguf"], models.body)

        // Greedy text completion = the CLI's text through the same cluster.
        let prompt = "The capital of France is"
        let cli = try CLIRun.run(cluster.binaries.appendingPathComponent("caravan"),
                                 ["generate", "--coordinator", cluster.clientsEndpoint, "--coordinator-key=\(cluster.coordinatorKey)",
                                  "-p", prompt, "-n", "12", "--temperature", "0"], in: cluster.directory, timeout: 60)
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let completion = try await http(base, "POST", "/v1/completions",
                                        body: #"{"prompt": "\#(prompt)", "max_tokens": 12, "temperature": 0}"#)
        XCTAssertEqual(completion.status, 200, completion.body)
        let choice = try XCTUnwrap((completion.json["choices"] as? [[String: Any]])?.first, completion.body)
        let text = try XCTUnwrap(choice["text"] as? String)
        XCTAssertEqual(text + "\n", cli.stdout)
        XCTAssertFalse(text.isEmpty)
        XCTAssertEqual(choice["finish_reason"] as? String, "length")
        let usage = try XCTUnwrap(completion.json["usage"] as? [String: Any])
        XCTAssertEqual(usage["completion_tokens"] as? Int, 12)
        XCTAssertGreaterThan(usage["prompt_tokens"] as? Int ?? 0, 0)

        // OpenAI's presence and frequency penalties reach the cluster's sampling: the greedy text
        // changes, and equals the CLI's with the same penalties.
        let penalized = try await http(base, "POST", "/v1/completions", body: #"""
            {"prompt": "\#(prompt)", "max_tokens": 12, "temperature": 0, "presence_penalty": 2, "frequency_penalty": 0.5}
            """#)
        XCTAssertEqual(penalized.status, 200, penalized.body)
        let penalizedText = try XCTUnwrap((penalized.json["choices"] as? [[String: Any]])?.first?["text"] as? String, penalized.body)
        XCTAssertNotEqual(penalizedText, text)
        let penalizedCLI = try CLIRun.run(cluster.binaries.appendingPathComponent("caravan"),
                                          ["generate", "--coordinator", cluster.clientsEndpoint, "--coordinator-key=\(cluster.coordinatorKey)",
                                           "-p", prompt, "-n", "12", "--temperature", "0", "--presence-penalty", "2",
                                           "--frequency-penalty", "0.5"], in: cluster.directory, timeout: 60)
        XCTAssertEqual(penalizedText + "\n", penalizedCLI.stdout, penalizedCLI.stderr)
        let tooStrong = try await http(base, "POST", "/v1/completions", body: #"{"prompt": "x", "presence_penalty": 2.5}"#)
        XCTAssertEqual(tooStrong.status, 400, tooStrong.body)
        XCTAssertEqual((tooStrong.json["error"] as? [String: Any])?["param"] as? String, "presence_penalty", tooStrong.body)

        // Streamed chat: the deltas add up to the non-streamed content.
        let chat = #""messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 10, "temperature": 0"#
        let whole = try await http(base, "POST", "/v1/chat/completions", body: "{\(chat)}")
        XCTAssertEqual(whole.status, 200, whole.body)
        let message = try XCTUnwrap(((whole.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String,
                                    whole.body)
        XCTAssertFalse(message.isEmpty)
        let streamed = try await http(base, "POST", "/v1/chat/completions", body: "{\(chat), \"stream\": true}")
        XCTAssertEqual(streamed.status, 200, streamed.body)
        XCTAssertTrue(streamed.body.hasSuffix("data: [DONE]\n\n"), streamed.body)
        var deltas = ""
        var finish: String?
        var chunks = 0
        for event in streamed.body.components(separatedBy: "\n\n") where event.hasPrefix("data: {") {
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any], event)
            XCTAssertEqual(json["object"] as? String, "chat.completion.chunk")
            let c = try XCTUnwrap((json["choices"] as? [[String: Any]])?.first, event)
            deltas += (c["delta"] as? [String: Any])?["content"] as? String ?? ""
            if let f = c["finish_reason"] as? String { finish = f }
            chunks += 1
        }
        XCTAssertEqual(deltas, message)
        XCTAssertGreaterThan(chunks, 2, "one chunk per token")
        XCTAssertNotNil(finish)

        // Errors: OpenAI error JSON, and the server keeps serving.
        let bad = try await http(base, "POST", "/v1/completions", body: #"{"prompt": "x", "temperature": -1}"#)
        XCTAssertEqual(bad.status, 400, bad.body)
        let error = try XCTUnwrap(bad.json["error"] as? [String: Any], bad.body)
        XCTAssertEqual(error["type"] as? String, "invalid_request_error")
        XCTAssertEqual(error["param"] as? String, "temperature")
        let garbage = try await http(base, "POST", "/v1/chat/completions", body: "{\"messages\": [")
        XCTAssertEqual(garbage.status, 400, garbage.body)
        XCTAssertNotNil(garbage.json["error"], garbage.body)
        let unknown = try await http(base, "GET", "/v1/nothing")
        XCTAssertEqual(unknown.status, 404, unknown.body)
        XCTAssertNotNil(unknown.json["error"], unknown.body)
        // A prompt longer than the context (256): the coordinator's refusal, as a 400, even when streaming.
        let long = String(repeating: "hello world ", count: 300)
        let overflow = try await http(base, "POST", "/v1/completions", body: #"{"prompt": "\#(long)", "stream": true}"#)
        XCTAssertEqual(overflow.status, 400, overflow.body)
        XCTAssertEqual((overflow.json["error"] as? [String: Any])?["code"] as? String, "context_length_exceeded", overflow.body)

        // A client that goes away mid-stream: its job is cancelled on the coordinator.
        let port = try XCTUnwrap(Int(base.split(separator: ":").last ?? ""))
        // Admin key: the status lists every client's jobs (the server's are its own key's).
        let client = try CaravanClient(endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey, keys: try cluster.adminKeys())
        let cancelledBefore = try await client.clusterStatus(includeFinishedJobs: true).jobs.filter { $0.state == .cancelled }.count
        try Self.abandonStream(port: port, body: #"{"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": true}"#)
        var cancelled = false
        for _ in 0..<100 where !cancelled {
            try await Task.sleep(for: .milliseconds(100))
            let status = try await client.clusterStatus(includeFinishedJobs: true)
            cancelled = status.jobs.filter { $0.state == .cancelled }.count > cancelledBefore && !status.jobs.contains { [.queued, .prefill, .generating].contains($0.state) }
        }
        XCTAssertTrue(cancelled, "the abandoned stream's job was not cancelled")

        let again = try await http(base, "GET", "/v1/models")
        XCTAssertEqual(again.status, 200, again.body)

        // Graceful stop on SIGTERM.
        serve.terminate()
        let deadline = Date().addingTimeInterval(10)
        while serve.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertFalse(serve.isRunning, "caravan-openai did not stop on SIGTERM")
        XCTAssertTrue(cluster.allRunning)
    }

    /// With `--api-keys` a request needs `Authorization: Bearer` with one of the file's keys
    /// (401 and OpenAI's error JSON otherwise, nothing reaches the coordinator); with
    /// `--max-concurrent-requests 1` a second request while one streams gets 429 at once, and is
    /// taken again once the first ends.
    func testOpenAIServeAPIKeysAndConcurrencyLimit() async throws {
        let (cluster, _) = try running()
        let keyFile = cluster.directory.appendingPathComponent("api_keys")
        let (alice, bob) = ("sk-alice-0123456789abcdef", "sk-bob-0123456789abcdef01")
        try "# API keys\n\(alice) alice\n\(bob) bob\n".write(to: keyFile, atomically: true, encoding: .utf8)
        let (serve, base) = try startServe(cluster, extraArguments: ["--api-keys", keyFile.path, "--max-concurrent-requests", "1"], log: "serve-keys.log")
        defer {
            if serve.isRunning { kill(serve.processIdentifier, SIGKILL) }
            serve.waitUntilExit()
        }
        let accepted = { cluster.log("coordinator.log").components(separatedBy: "job accepted").count }
        let before = accepted()
        let missing = try await http(base, "POST", "/v1/completions", body: #"{"prompt": "x", "max_tokens": 2}"#)
        XCTAssertEqual(missing.status, 401, missing.body)
        XCTAssertEqual((missing.json["error"] as? [String: Any])?["code"] as? String, "missing_api_key", missing.body)
        let wrong = try await http(base, "GET", "/v1/models", bearer: "sk-mallory-0123456789abcdef")
        XCTAssertEqual(wrong.status, 401, wrong.body)
        XCTAssertEqual((wrong.json["error"] as? [String: Any])?["code"] as? String, "invalid_api_key", wrong.body)
        XCTAssertEqual(accepted(), before, "an unauthenticated request reached the coordinator")
        for key in [alice, bob] {
            let models = try await http(base, "GET", "/v1/models", bearer: key)
            XCTAssertEqual(models.status, 200, models.body)
        }

        let port = try XCTUnwrap(Int(base.split(separator: ":").last ?? ""))
        let held = try Self.openStream(port: port, bearer: alice,
                                       body: #"{"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": true}"#)
        let busy = try await http(base, "POST", "/v1/completions", body: #"{"prompt": "x", "max_tokens": 2}"#, bearer: bob)
        XCTAssertEqual(busy.status, 429, busy.body)
        XCTAssertEqual((busy.json["error"] as? [String: Any])?["code"] as? String, "rate_limit_exceeded", busy.body)
        close(held)
        var after = HTTPResult(status: 0, body: "")
        for _ in 0..<100 {
            after = try await http(base, "POST", "/v1/completions", body: #"{"prompt": "x", "max_tokens": 2, "temperature": 0}"#, bearer: bob)
            if after.status != 429 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertEqual(after.status, 200, "the slot came back when the first request ended: \(after.body)")
    }

    /// Sends a streaming request over a raw socket, reads until the first event, then closes.
    private static func abandonStream(port: Int, body: String) throws {
        close(try openStream(port: port, body: body))
    }

    /// Sends a streaming request over a raw socket and reads until the first event; returns the
    /// open socket (the request runs until it is closed or the job ends).
    private static func openStream(port: Int, bearer: String? = nil, body: String) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClusterProcesses.Failure(description: "socket() failed") }
        var ok = false
        defer { if !ok { close(fd) } }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ClusterProcesses.Failure(description: "connect() failed") }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + (bearer.map { "Authorization: Bearer \($0)\r\n" } ?? "") + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else {
            throw ClusterProcesses.Failure(description: "send() failed")
        }
        var received = ""
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !received.contains("data: {") {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw ClusterProcesses.Failure(description: "no event before the connection ended: \(received)") }
            received += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        ok = true
        return fd
    }
}
