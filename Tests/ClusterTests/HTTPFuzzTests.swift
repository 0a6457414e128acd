import Foundation
import TestSupport
import XCTest

/// A seeded fuzzer for `caravan-openai` as a real process in front of the shared test cluster:
/// mutated JSON bodies of both endpoints, hostile numbers (`max_tokens` 2^63, `temperature` NaN,
/// -1, 1e308, `n` 1e9), deep nesting, unknown fields, invalid UTF-8, wrong content types and
/// bodies past the size limit. Every answer is a status with an OpenAI error body (or a result);
/// the server keeps serving, within a memory bound, and a greedy completion keeps its text.
extension ClusterTests {
    /// Valid requests the mutations start from (one token each, so that those that stay valid
    /// cost the cluster little).
    private static let httpSeeds: [(path: String, body: String)] = [
        ("/v1/completions", #"{"model": "m", "prompt": "The capital of France is", "max_tokens": 1, "temperature": 0, "stop": ["\n"], "seed": 3}"#),
        ("/v1/completions", #"{"prompt": ["a", "b"], "max_tokens": 1, "top_p": 0.5, "logprobs": 2, "stream": true}"#),
        ("/v1/chat/completions", #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0.5}"#),
        ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_completion_tokens": 1, "stream": true, "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 2}"#),
    ]

    /// JSON fragments spliced over a seed's values: hostile numbers, deep nesting, wrong types.
    private static let httpFragments = [
        "9223372036854775808", "-9223372036854775809", "1e308", "-1", "NaN", "Infinity", "1e9", "0", "-0", "4.9e-324",
        "18446744073709551616", "1.7976931348623157e309", "null", "true", "\"\"", "[]", "{}", "\"\\ud800\"",
        String(repeating: "[", count: 100_000), String(repeating: "{\"a\":", count: 50_000),
        "\"" + String(repeating: "x", count: 300_000) + "\"", "[" + Array(repeating: "1", count: 100_000).joined(separator: ",") + "]",
    ]

    /// Numbers and fields that are valid JSON but hostile values.
    private static let hostileFields = [
        #""max_tokens": 9223372036854775807"#, #""max_tokens": -1"#, #""max_tokens": 1e308"#, #""temperature": -1"#,
        #""temperature": 1e308"#, #""n": 1000000000"#, #""top_p": -0.5"#, #""seed": -1"#, #""logprobs": 1000000"#,
        #""top_logprobs": -3"#, #""stop": ["#, #""unknown_field": {"deep": [1, 2, {"x": null}]}"#, #""stream": "yes""#,
        #""frequency_penalty": 1e308"#, #""presence_penalty": -1e308"#, #""logit_bias": {"1": 100}"#, #""stop": []"#,
    ]

    /// One hostile request from case `i`'s seed: body bytes, content type, path.
    private static func httpCase(_ rng: inout SplitMix) -> (path: String, body: Data, contentType: String) {
        let seed = rng.pick(httpSeeds)
        var body = Array(seed.body.utf8)
        switch rng.below(6) {
        case 0:
            body = ByteMutator.mutate(body, &rng)
        case 1:
            // A value replaced by a hostile fragment.
            let fragment = Array(rng.pick(httpFragments).utf8)
            let colons = body.indices.filter { body[$0] == UInt8(ascii: ":") }
            if let at = colons.isEmpty ? nil : rng.pick(colons) {
                let end = body[(at + 1)...].firstIndex { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "}") } ?? body.count
                body.replaceSubrange((at + 1)..<end, with: fragment)
            }
        case 2:
            // A hostile field added (a duplicate key overrides the seed's).
            body.insert(contentsOf: Array((rng.pick(hostileFields) + ", ").utf8), at: 1)
        case 3:
            // Invalid UTF-8 inside a string.
            if let quote = body.lastIndex(of: UInt8(ascii: "\"")) {
                body.insert(contentsOf: rng.pick([[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80]]), at: quote)
            }
        case 4:
            body = Array(body.prefix(rng.below(body.count)))
        default:
            body = Array(rng.pick(httpFragments).utf8)
        }
        let contentType = rng.oneIn(8) ? rng.pick(["text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin1",
                                                   "multipart/form-data; boundary=x"]) : "application/json"
        let path = rng.oneIn(16) ? rng.pick(["/v1/completions/../models", "/v1/embeddings", "/v1/chat/completions?x=1"]) : seed.path
        return (path, Data(body), contentType)
    }

    func testHTTPFuzzServerKeepsServing() async throws {
        let (cluster, _) = try running()
        let (serve, base) = try startServe(cluster, log: "serve-fuzz.log")
        defer {
            if serve.isRunning { kill(serve.processIdentifier, SIGKILL) }
            serve.waitUntilExit()
        }
        let run = FuzzRun(short: 240, salt: 8)
        let reference = try await http(base, "POST", "/v1/completions",
                                       body: #"{"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}"#)
        XCTAssertEqual(reference.status, 200, reference.body)
        let baseline = residentBytes(pid: serve.processIdentifier) ?? 0
        var statuses: [Int: Int] = [:]
        let started = ContinuousClock.now
        var next = run.cases.lowerBound
        while next < run.cases.upperBound {
            let batch = next..<min(run.cases.upperBound, next + 60)
            // Eight requests at a time; each answer must be an HTTP status with a JSON body.
            // (`http` touches no state of the test case.)
            nonisolated(unsafe) let test = self
            try await withThrowingTaskGroup(of: (Int, Int, String).self) { group in
                var pending = batch.makeIterator()
                func add() {
                    guard let i = pending.next() else { return }
                    var rng = SplitMix(seed: run.seed(ofCase: i))
                    let c = Self.httpCase(&rng)
                    group.addTask {
                        let r = try await test.http(base, "POST", c.path, bytes: c.body, contentType: c.contentType)
                        return (i, r.status, r.body)
                    }
                }
                for _ in 0..<8 { add() }
                while let (i, status, body) = try await group.next() {
                    statuses[status, default: 0] += 1
                    XCTAssertTrue((200..<600).contains(status), "case \(i): status \(status)")
                    if status >= 400 {
                        XCTAssertNotNil((try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["error"],
                                        "case \(i): \(status) without an OpenAI error body: \(body.prefix(300))")
                    }
                    XCTAssertNotEqual(status, 500, "case \(i) (CARAVAN_FUZZ_CASE=\(i)): \(body.prefix(300))")
                    add()
                }
            }
            next = batch.upperBound
            XCTAssertTrue(serve.isRunning, "caravan-openai died by case \(next):\n\(cluster.log("serve-fuzz.log").suffix(3000))")
            guard serve.isRunning else { break }
            let again = try await http(base, "POST", "/v1/completions",
                                       body: #"{"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}"#)
            XCTAssertEqual(again.status, 200, again.body)
            // The completion's text (a dictionary's description has no fixed key order).
            let text = { (json: [String: Any]) in ((json["choices"] as? [[String: Any]])?.first?["text"] as? String) }
            XCTAssertNotNil(text(reference.json))
            XCTAssertEqual(text(again.json), text(reference.json), "by case \(next)")
        }
        // A body past the limit (default 1 MiB) is refused (413, or the connection is closed while
        // the client still sends), without being buffered whole.
        if let huge = try? await http(base, "POST", "/v1/completions", bytes: Data(repeating: 0x20, count: 64 << 20)) {
            XCTAssertEqual(huge.status, 413, huge.body)
        }
        XCTAssertTrue(serve.isRunning, "caravan-openai died on a 64 MiB body")
        let rss = residentBytes(pid: serve.processIdentifier) ?? 0
        XCTAssertLessThan(rss, baseline + (128 << 20), "caravan-openai grew from \(baseline >> 20) to \(rss >> 20) MiB")
        print("http fuzz: \(run.cases.count) requests, statuses \(statuses.sorted { $0.key < $1.key }), "
              + "\(ContinuousClock.now - started), RSS \(baseline >> 20) -> \(rss >> 20) MiB, seed \(run.seed)")
    }
}
