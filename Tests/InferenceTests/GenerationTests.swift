import CaravanCore
import GGUF
import Inference
import Llama
import Sampling
import TestSupport
import Tokenizer
import XCTest

/// Generation through the scheduler on the real default model.
final class GenerationTests: XCTestCase {
    func testGreedyThroughSchedulerMatchesLlamaCpp() async throws {
        let (file, tok) = try load()
        let prompt = tok.encode("The capital of France is", addSpecial: true, parseSpecial: true)
        XCTAssertEqual(prompt, [504, 3575, 282, 4649, 314])
        let scheduler = BatchScheduler(engine: try engine(file))
        let session = try GenerationSession(sequence: SequenceID(1), prompt: prompt,
                                            parameters: SamplingParameters(temperature: 0, maxTokens: 16),
                                            tokenizer: tok, contextLimit: 256)
        scheduler.add(session)
        let result = try await runAll(scheduler)[SequenceID(1)]!
        XCTAssertEqual(result.ids, [7042, 30, 198, 198, 504, 1797, 1918, 553, 253, 2155, 282, 4723, 216, 35, 33, 33])
        XCTAssertEqual(result.text, " Paris.\n\nThe United States has a population of approximately 311")
        XCTAssertEqual(result.reason, .length)
    }

    func testConcurrentSessionsEqualSoloRuns() async throws {
        let (file, tok) = try load()
        let prompts = ["Once upon a time", "def add(a, b):", "The three primary colors are", "In 1492,"]
        let params: [SamplingParameters] = [
            SamplingParameters(temperature: 0, maxTokens: 12),
            SamplingParameters(temperature: 0.9, topK: 20, seed: 7, maxTokens: 12),
            SamplingParameters(temperature: 0.7, topP: 0.8, minP: 0.1, repeatPenalty: 1.2, seed: 42, maxTokens: 12),
            SamplingParameters(temperature: 1.2, frequencyPenalty: 0.5, presencePenalty: 0.3, seed: 3, maxTokens: 12),
        ]
        func session(_ i: Int, _ seq: UInt64) throws -> GenerationSession {
            try GenerationSession(sequence: SequenceID(seq), prompt: tok.encode(prompts[i % 4], addSpecial: true, parseSpecial: true),
                                  parameters: params[i % 4], tokenizer: tok, contextLimit: 256)
        }
        // Alone.
        var solo: [[Int32]] = []
        for i in 0..<4 {
            let s = BatchScheduler(engine: try engine(file))
            s.add(try session(i, 1))
            solo.append(try await runAll(s)[SequenceID(1)]!.ids)
        }
        // Eight at once (each prompt twice), in one scheduler.
        let together = BatchScheduler(engine: try engine(file))
        for i in 0..<8 { together.add(try session(i, UInt64(10 + i))) }
        let results = try await runAll(together)
        for i in 0..<8 {
            XCTAssertEqual(results[SequenceID(UInt64(10 + i))]?.ids, solo[i % 4], "session \(i)")
        }
        XCTAssertNotEqual(solo[1], solo[3])
    }

    func testStopStringsEndGenerationAndAreNotEmitted() async throws {
        let (file, tok) = try load()
        let scheduler = BatchScheduler(engine: try engine(file))
        let prompt = tok.encode("The capital of France is", addSpecial: true, parseSpecial: true)
        scheduler.add(try GenerationSession(sequence: SequenceID(1), prompt: prompt,
                                            parameters: SamplingParameters(temperature: 0, maxTokens: 40, stop: ["United"]),
                                            tokenizer: tok, contextLimit: 256))
        let r = try await runAll(scheduler)[SequenceID(1)]!
        XCTAssertEqual(r.reason, .stop)
        XCTAssertEqual(r.text, " Paris.\n\nThe ")
    }

    func testEndOfGenerationTokenStopsChat() async throws {
        let (file, tok) = try load()
        let scheduler = BatchScheduler(engine: try engine(file))
        let prompt = tok.encode("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", addSpecial: true, parseSpecial: true)
        scheduler.add(try GenerationSession(sequence: SequenceID(1), prompt: prompt,
                                            parameters: SamplingParameters(temperature: 0, maxTokens: 40),
                                            tokenizer: tok, contextLimit: 256))
        let r = try await runAll(scheduler)[SequenceID(1)]!
        XCTAssertEqual(r.reason, .endOfGeneration)
        XCTAssertFalse(r.ids.contains(2))  // <|im_end|> ends generation and is not streamed
        XCTAssertFalse(r.text.contains("<|im_end|>"))
        XCTAssertTrue(r.text.contains("4"), r.text)
    }

    func testRejectsBadRequests() throws {
        let (_, tok) = try load()
        XCTAssertThrowsError(try GenerationSession(sequence: SequenceID(1), prompt: [], parameters: SamplingParameters(),
                                                   tokenizer: tok, contextLimit: 16)) {
            XCTAssertEqual($0 as? GenerationError, .emptyPrompt)
        }
        XCTAssertThrowsError(try GenerationSession(sequence: SequenceID(1), prompt: Array(repeating: 5, count: 16),
                                                   parameters: SamplingParameters(), tokenizer: tok, contextLimit: 16)) {
            XCTAssertEqual($0 as? GenerationError, .promptTooLong(tokens: 16, limit: 16))
        }
        XCTAssertThrowsError(try GenerationSession(sequence: SequenceID(1), prompt: [1], parameters: SamplingParameters(temperature: -1),
                                                   tokenizer: tok, contextLimit: 16)) { error in
            guard case let .invalidParameters(m)? = error as? GenerationError else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("temperature"), m)
        }
    }

    func testCancelReleasesTheSequence() async throws {
        let (file, tok) = try load()
        let eng = try engine(file)
        let scheduler = BatchScheduler(engine: eng)
        scheduler.add(try GenerationSession(sequence: SequenceID(5), prompt: [504, 3575], parameters: SamplingParameters(temperature: 0, maxTokens: 100),
                                            tokenizer: tok, contextLimit: 256))
        _ = try await scheduler.step()
        _ = try await scheduler.step()
        let event = await scheduler.cancel(SequenceID(5))
        guard case .finished(.cancelled, _)? = event else { return XCTFail("\(String(describing: event))") }
        XCTAssertFalse(scheduler.hasWork)
        let cancelledAgain = await scheduler.cancel(SequenceID(5))
        XCTAssertNil(cancelledAgain)
    }

    func testPerplexityWithinOnePercentOfLlamaCpp() throws {
        let (file, tok) = try load()
        let ref = try EngineReference.load()
        let expected = try XCTUnwrap(ref.perplexity.first { $0.n_ctx == 256 })
        let tokens = tok.encode(try EngineReference.perplexityText(), addSpecial: false, parseSpecial: false)
        XCTAssertEqual(tokens.count, expected.tokens)
        let stage = try LlamaStage(file: file, contextLimit: 256, runner: ComputeThreadPool(threads: 2))
        let result = try Perplexity.compute(stage: stage, tokens: tokens, context: 256, bos: nil)
        XCTAssertEqual(result.chunks, expected.chunks)
        XCTAssertEqual(result.perplexity, expected.ppl, accuracy: expected.ppl * 0.01,
                       "Caravan \(result.perplexity) vs llama.cpp \(expected.ppl)")
    }
}
