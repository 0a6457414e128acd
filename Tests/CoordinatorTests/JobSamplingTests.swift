import CaravanCore
import CaravanWire
import Coordinator
import Foundation
import XCTest

/// How the coordinator reads a job's sampling parameters, from the request and from the journal
/// (which stores them as protobuf JSON): every parameter is carried, and a line an older
/// coordinator wrote reads with the meaning it had.
final class JobSamplingTests: XCTestCase {
    private func submission(_ request: JobRequest) -> JournalSubmission {
        JournalSubmission(job: JobID("job-1")!, sequence: SequenceID(1), clientRequestID: request.clientRequestID, prompt: [1],
                          sampling: request.sampling, maxTokens: request.maxTokens, seed: request.seed ?? 0, submittedMs: 0)
    }

    private func throughTheFile(_ entry: JournalEntry) throws -> JournalEntry {
        try JSONDecoder().decode(JournalEntry.self, from: try JSONEncoder().encode(entry))
    }

    func testEveryParameterIsRead() throws {
        let request = JobRequest(input: .prompt("x"),
                                 sampling: SamplingParameters(temperature: 0.6, topK: 7, topP: 0.8, minP: 0.1, repeatPenalty: 1.3,
                                                              repeatLastN: 24, frequencyPenalty: 0.4, presencePenalty: -1.25,
                                                              stop: ["\n"]),
                                 maxTokens: 9, seed: 12)
        let received = try JobRequest(wire: try Caravan_V1_JobSubmit(request))
        // Through the journal's JSON, as a restored job reads it.
        guard case .submitted(let restored) = try throughTheFile(.submitted(submission(received))) else { return XCTFail() }
        for s in [submission(received), restored] {
            var expected = request.sampling
            expected.maxTokens = 9
            expected.seed = 12
            XCTAssertEqual(s.parameters(contextLimit: 256), expected)
        }
    }

    /// A journal line from before repeat_last_n, frequency_penalty and presence_penalty existed
    /// (the repeat penalty under its first name): the default window, no such penalties.
    func testAnOldJournalLineReadsAsBefore() throws {
        let line = #"{"submitted":{"_0":{"job":"job-1","sequence":1,"clientRequestID":"","prompt":[1],"sampling":"{\"temperature\": 0.5, \"repetitionPenalty\": 1.2, \"seed\": \"7\"}","submittedMs":0}}}"#
        guard case .submitted(let s) = try JSONDecoder().decode(JournalEntry.self, from: Data(line.utf8)) else { return XCTFail() }
        let p = s.parameters(contextLimit: 256)
        XCTAssertEqual(p.repeatPenalty, 1.2)
        XCTAssertEqual(p.repeatLastN, 64)
        XCTAssertEqual(p.frequencyPenalty, 0)
        XCTAssertEqual(p.presencePenalty, 0)
        XCTAssertEqual(p.seed, 7)
        XCTAssertEqual(p.maxTokens, 256, "max_tokens 0: up to the context limit")
        XCTAssertEqual(p.topP, 1, "top_p 0: off")
    }
}
