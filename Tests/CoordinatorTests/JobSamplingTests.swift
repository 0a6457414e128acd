import CaravanCore
import CaravanWire
import Coordinator
import XCTest

/// How the coordinator reads a job's sampling parameters, at admission and from the journal (which
/// stores them as protobuf JSON): every parameter is carried, and a line an older coordinator
/// wrote reads with the meaning it had.
final class JobSamplingTests: XCTestCase {
    func testEveryParameterIsRead() throws {
        let request = JobRequest(input: .prompt("x"),
                                 sampling: SamplingParameters(temperature: 0.6, topK: 7, topP: 0.8, minP: 0.1, repeatPenalty: 1.3,
                                                              repeatLastN: 24, frequencyPenalty: 0.4, presencePenalty: -1.25,
                                                              stop: ["\n"]),
                                 maxTokens: 9, seed: 12)
        let wire = try Caravan_V1_JobSubmit(request).sampling
        // Through the journal's JSON, as a restored job reads it.
        let restored = try Caravan_V1_SamplingParameters(jsonString: try wire.jsonString())
        for w in [wire, restored] {
            let p = SamplingParameters(wire: w, contextLimit: 256)
            var expected = request.sampling
            expected.maxTokens = 9
            expected.seed = 12
            XCTAssertEqual(p, expected)
        }
    }

    /// A journal line from before repeat_last_n, frequency_penalty and presence_penalty existed
    /// (the repeat penalty under its first name): the default window, no such penalties.
    func testAnOldJournalLineReadsAsBefore() throws {
        let old = try Caravan_V1_SamplingParameters(jsonString: #"{"temperature": 0.5, "repetitionPenalty": 1.2, "seed": "7"}"#)
        let p = SamplingParameters(wire: old, contextLimit: 256)
        XCTAssertEqual(p.repeatPenalty, 1.2)
        XCTAssertEqual(p.repeatLastN, 64)
        XCTAssertEqual(p.frequencyPenalty, 0)
        XCTAssertEqual(p.presencePenalty, 0)
        XCTAssertEqual(p.seed, 7)
        XCTAssertEqual(p.maxTokens, 256, "max_tokens 0: up to the context limit")
        XCTAssertEqual(p.topP, 1, "top_p 0: off")
    }
}
