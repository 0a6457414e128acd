import CaravanCore
import CaravanTesting
import ChatTemplate
import GGUF
import Tokenizer
import XCTest
@testable import Coordinator

/// Admission as a pure decision: every refusal with the failure its client is told, and what an
/// admitted job gets (prompt tokens, the seed resolved, the token limit defaulting to the context).
final class JobAdmissionTests: XCTestCase {
    static let tokenizer = Result { try Tokenizer(gguf: try GGUFFile(path: try TinyModel().write())) }
    let limits = JobAdmission.Limits(maxUnfinishedJobs: 10, maxJobsPerClient: 2, maxOutbox: 100)

    private func admission(template: ChatTemplate? = nil, contextLimit: Int = 64) throws -> JobAdmission {
        JobAdmission(tokenizer: try Self.tokenizer.get(), template: template, contextLimit: contextLimit, limits: limits)
    }

    private func decide(_ request: JobRequest, load: JobAdmission.Load = .init(), template: ChatTemplate? = nil)
        throws -> Result<JobAdmission.Admitted, JobAdmission.Refusal> {
        try admission(template: template).admit(request, sequence: SequenceID(7), load: load, drawSeed: { 4242 })
    }

    private func refusal(_ request: JobRequest, load: JobAdmission.Load = .init(), template: ChatTemplate? = nil,
                         file: StaticString = #filePath, line: UInt = #line) throws -> JobAdmission.Refusal? {
        guard case .failure(let refusal) = try decide(request, load: load, template: template) else {
            XCTFail("admitted", file: file, line: line)
            return nil
        }
        return refusal
    }

    let tokens = JobRequest(input: .tokens([72, 105]), sampling: SamplingParameters(temperature: 0))

    func testEveryLimitRefusesWithItsReason() throws {
        XCTAssertEqual(try refusal(tokens, load: .init(admitting: false, unavailableReason: "shutting down")), .notAdmitting("shutting down"))
        XCTAssertEqual(try refusal(tokens, load: .init(unfinished: 10)), .coordinatorFull(limit: 10))
        XCTAssertEqual(try refusal(tokens, load: .init(unfinished: 9, ownUnfinished: 2)), .clientFull(limit: 2))
        XCTAssertEqual(try refusal(tokens, load: .init(outboxQueued: 50)), .outboxBackedUp)
        XCTAssertEqual(JobAdmission.Refusal.notAdmitting("shutting down").failure, JobFailure(.unavailable, "shutting down"))
        XCTAssertEqual(JobAdmission.Refusal.coordinatorFull(limit: 10).failure.reason, .unavailable)
        XCTAssertEqual(JobAdmission.Refusal.clientFull(limit: 2).failure.reason, .tooManyJobs)
        XCTAssertEqual(JobAdmission.Refusal.outboxBackedUp.failure.reason, .unavailable)
        // The limits come before the input: a full coordinator does not tokenize.
        XCTAssertEqual(try refusal(JobRequest(input: .tokens([999])), load: .init(unfinished: 10)), .coordinatorFull(limit: 10))
    }

    func testEveryInputAndParameterProblemRefusesWithItsReason() throws {
        XCTAssertEqual(try refusal(JobRequest(input: .chat([ChatTurn(role: "user", content: "hi")]))), .noChatTemplate)
        let raising = try ChatTemplate("{{ raise_exception('no system turns') }}")
        guard case .chatTemplate(let why)? = try refusal(JobRequest(input: .chat([])), template: raising) else { return XCTFail() }
        XCTAssertTrue(why.contains("no system turns"), why)
        XCTAssertEqual(try refusal(JobRequest(input: .tokens([1, 257]))), .tokenOutsideVocabulary(257, vocabulary: 257))
        XCTAssertEqual(try refusal(JobRequest(input: .tokens([-1]))), .tokenOutsideVocabulary(-1, vocabulary: 257))
        guard case .contextOverflow? = try refusal(JobRequest(input: .tokens(Array(repeating: 65, count: 64)))) else {
            return XCTFail("a prompt that fills the context")
        }
        guard case .invalidRequest(let empty)? = try refusal(JobRequest(input: .tokens([]))) else { return XCTFail() }
        XCTAssertTrue(empty.contains("empty"), empty)
        guard case .invalidRequest(let bad)? = try refusal(JobRequest(input: .prompt("x"), sampling: SamplingParameters(temperature: -1)))
        else { return XCTFail() }
        XCTAssertTrue(bad.contains("temperature"), bad)
        guard case .invalidRequest? = try refusal(JobRequest(input: .prompt("x"), maxTokens: 0)) else { return XCTFail("max tokens 0") }
        XCTAssertEqual(JobAdmission.Refusal.noChatTemplate.failure.reason, .invalidRequest)
        XCTAssertEqual(JobAdmission.Refusal.tokenOutsideVocabulary(3, vocabulary: 2).failure.reason, .invalidRequest)
        XCTAssertEqual(JobAdmission.Refusal.contextOverflow("x").failure, JobFailure(.contextOverflow, "x"))
    }

    func testAnAdmittedJobHasItsPromptSeedAndLimitResolved() throws {
        guard case .success(let drawn) = try decide(tokens) else { return XCTFail("refused") }
        XCTAssertEqual(drawn.prompt, [72, 105])
        XCTAssertEqual(drawn.seed, 4242, "the coordinator draws the seed a job leaves open")
        XCTAssertEqual(drawn.session.parameters.seed, 4242)
        XCTAssertEqual(drawn.session.parameters.maxTokens, 64, "no limit: up to the context")
        XCTAssertEqual(drawn.session.sequence, SequenceID(7))
        guard case .success(let given) = try decide(JobRequest(input: .prompt("Hi"), maxTokens: 5, seed: 9)) else { return XCTFail() }
        XCTAssertEqual(given.seed, 9)
        XCTAssertEqual(given.session.parameters.maxTokens, 5)
        XCTAssertEqual(given.prompt, try Self.tokenizer.get().encode("Hi", addSpecial: true, parseSpecial: true))
        let chat = try ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
        guard case .success(let rendered) = try decide(JobRequest(input: .chat([ChatTurn(role: "user", content: "yo")])), template: chat)
        else { return XCTFail() }
        XCTAssertEqual(rendered.prompt, try Self.tokenizer.get().encode("<user>yo", addSpecial: true, parseSpecial: true))
    }
}
