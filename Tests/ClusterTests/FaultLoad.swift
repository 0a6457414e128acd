import CaravanWire
import Foundation
import XCTest
import ZeroMQ

/// The jobs the fault tests and the chaos run put on a test bed, their fault-free references,
/// and the checks that a faulted run delivered exactly the same streams.
enum FaultLoad {
    /// Coordinator flags for fault tests: F32 activations (the pipeline then computes exactly
    /// what one node does, however the layers are split) and short heartbeats.
    static let coordinatorArguments = [
        "--activation-dtype", "f32", "--ctx", "256", "--batch-sequences", "4",
        "--heartbeat-interval", "0.25", "--heartbeat-timeout", "1.5", "--step-timeout", "10",
    ]
    /// Worker flags: a fixed speed (equal splits, no start-up benchmark).
    static let workerArguments = ["--speed", "1"]

    /// A job: a prompt and its sampling (greedy or seeded).
    struct Spec: Sendable {
        var id: String
        var prompt: String
        var temperature: Float
        var seed: UInt64? = nil
        var topK: UInt32 = 0
        var topP: Float = 0
        var minP: Float = 0
        var repetitionPenalty: Float = 0

        func submit(maxTokens: Int, as clientID: String? = nil) -> Caravan_V1_JobSubmit {
            var m = Caravan_V1_JobSubmit()
            m.clientRequestID = clientID ?? id
            m.input = .prompt(prompt)
            m.sampling.temperature = temperature
            if let seed { m.sampling.seed = seed }
            m.sampling.topK = topK
            m.sampling.topP = topP
            m.sampling.minP = minP
            m.sampling.repetitionPenalty = repetitionPenalty
            m.sampling.maxTokens = UInt32(maxTokens)
            return m
        }
    }

    /// Two greedy and two seeded jobs whose prompts do not end early.
    static let specs: [Spec] = [
        Spec(id: "greedy-story", prompt: "Once upon a time, in a small village by the sea, there lived", temperature: 0),
        Spec(id: "greedy-rome", prompt: "The history of the Roman Empire begins with", temperature: 0),
        Spec(id: "seeded-robot", prompt: "Here is a short story about a robot who learns to paint:", temperature: 0.8,
             seed: 42, topK: 40, topP: 0.95),
        Spec(id: "seeded-ideas", prompt: "Ten ideas for a rainy weekend:\n1.", temperature: 1.0, seed: 7, minP: 0.05,
             repetitionPenalty: 1.1),
    ]

    /// Fault-free streams by spec id and max_tokens, filled by the first healthy run.
    nonisolated(unsafe) static var references: [String: JobStream.Job] = [:]

    /// The fault-free streams of `specs` at `maxTokens`, running them on `bed` if not known yet.
    static func references(on client: JobClient, maxTokens: Int) async throws -> [String: JobStream.Job] {
        let key = { (id: String) in "\(id)@\(maxTokens)" }
        if specs.allSatisfy({ references[key($0.id)] != nil }) {
            return Dictionary(uniqueKeysWithValues: specs.map { ($0.id, references[key($0.id)]!) })
        }
        let r = try await JobStream.run(client, specs.map { $0.submit(maxTokens: maxTokens) }, timeout: .seconds(120))
        for (id, job) in r {
            guard job.error == nil, job.sequencesContiguous else {
                throw Testbed.Failure(description: "the fault-free reference run failed: \(job.summary)")
            }
            references[key(id)] = job
        }
        return r
    }

    /// Checks that `got` is exactly the reference stream: same token ids in order (none lost,
    /// none doubled), same text and finish reason, event sequence numbers counting up by one
    static func assertSame(_ got: JobStream.Job?, _ reference: JobStream.Job?, _ label: String,
                           file: StaticString = #filePath, line: UInt = #line) {
        guard let got, let reference else { return XCTFail("\(label): missing stream", file: file, line: line) }
        XCTAssertNil(got.error, "\(label): \(got.summary)", file: file, line: line)
        if got.tokens != reference.tokens {
            let first = firstDifference(got.tokens, reference.tokens)
            XCTFail("\(label): \(got.tokens.count) tokens vs \(reference.tokens.count) fault-free, first difference at \(first): "
                + "got \(Array(got.tokens.dropFirst(max(0, first - 2)).prefix(6))), want \(Array(reference.tokens.dropFirst(max(0, first - 2)).prefix(6)))",
                file: file, line: line)
        }
        XCTAssertEqual(got.text, reference.text, "\(label): text", file: file, line: line)
        XCTAssertEqual(got.finish, reference.finish, "\(label): finish reason", file: file, line: line)
        XCTAssertTrue(got.sequencesContiguous, "\(label): event sequence has gaps or repeats: \(got.sequences)", file: file, line: line)
        XCTAssertEqual(got.sequences.count, got.tokens.count + 2, "\(label): accepted + tokens + finished events", file: file, line: line)
    }

    /// The first index where `a` and `b` differ (the shorter length when one is a prefix of the other).
    static func firstDifference(_ a: [Int32], _ b: [Int32]) -> Int {
        (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
    }

    /// `d` in whole milliseconds.
    static func milliseconds(_ d: Duration) -> Int {
        Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }
}
