import CaravanCore
import Foundation
import Inference
import Llama
import Sampling
import XCTest

/// Logprobs reported with each token: the raw model distribution, checked against a direct
/// log-softmax of the same logits.
final class LogprobsTests: XCTestCase {
    func testGreedyTokensCarryTheirLogprobAndTheTopAlternatives() async throws {
        let (file, tok) = try load()
        let prompt = tok.encode("The capital of France is", addSpecial: true, parseSpecial: true)
        var parameters = SamplingParameters(temperature: 0, maxTokens: 6)
        parameters.topLogprobs = 5
        let session = try GenerationSession(sequence: SequenceID(1), prompt: prompt, parameters: parameters, tokenizer: tok,
                                            contextLimit: 256)
        // The first step by hand, to compare with a log-softmax of the same logits.
        let stage = try LlamaStage(file: file, contextLimit: 256, runner: ComputeThreadPool(threads: 2))
        guard case var .logits(values, _, vocabulary) = try stage.forward(StageBatch(entries: session.pendingEntries(limit: 64))) else {
            return XCTFail("expected logits")
        }
        session.markProcessed(prompt.count)
        let expected: [Double] = {
            let m = Double(values.max()!)
            let lse = m + log(values.reduce(0.0) { $0 + exp(Double($1) - m) })
            return values.map { Double($0) - lse }
        }()
        _ = values.withUnsafeMutableBufferPointer { session.accept(logits: $0) }
        XCTAssertEqual(vocabulary, expected.count)
        let first = try XCTUnwrap(session.logprobs.first)
        let chosen = Int(session.generatedTokens.first!)
        XCTAssertEqual(Double(first.logprob), expected[chosen], accuracy: 1e-4)
        XCTAssertEqual(first.top.count, 5)
        XCTAssertEqual(Int(first.top[0].id), chosen, "greedy picks the most likely token")
        XCTAssertEqual(first.top.map(\.logprob), first.top.map(\.logprob).sorted(by: >))
        let best5 = expected.enumerated().sorted { $0.element > $1.element }.prefix(5)
        XCTAssertEqual(first.top.map { Int($0.id) }, best5.map(\.offset))
        for (alt, e) in zip(first.top, best5) { XCTAssertEqual(Double(alt.logprob), e.element, accuracy: 1e-4) }

        // The rest through the scheduler: one record per token, all <= 0.
        let scheduler = BatchScheduler(engine: try engine(file))
        let other = try GenerationSession(sequence: SequenceID(2), prompt: prompt, parameters: parameters, tokenizer: tok,
                                          contextLimit: 256)
        scheduler.add(other)
        _ = try await runAll(scheduler)
        XCTAssertEqual(other.logprobs.count, other.generatedCount)
        XCTAssertTrue(other.logprobs.allSatisfy { $0.logprob <= 0 && $0.top.count == 5 })
        XCTAssertEqual(other.logprobs[0], first, "the same numbers through the scheduler")
    }

    func testTooManyAlternativesIsRefused() {
        var p = SamplingParameters()
        p.topLogprobs = 21
        XCTAssertThrowsError(try p.validate())
    }
}
