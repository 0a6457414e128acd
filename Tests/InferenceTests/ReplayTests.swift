import CaravanCore
import GGUF
import Inference
import Llama
import Sampling
import TestSupport
import Tokenizer
import XCTest

/// A session moved to a new engine mid-generation (what the coordinator does after a fault or a
/// re-plan) continues exactly as if nothing had happened: same tokens, same text, positions
/// replayed from 0, nothing emitted twice.
final class ReplayTests: XCTestCase {
    private func collect(_ events: [(SequenceID, GenerationEvent)], into r: inout (ids: [Int32], text: String)) {
        for (_, e) in events {
            switch e {
            case let .token(id, text): r.ids.append(id); r.text += text
            case let .finished(_, text): r.text += text
            }
        }
    }

    private let cases: [SamplingParameters] = [
        SamplingParameters(temperature: 0, maxTokens: 24),
        SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, seed: 1234, maxTokens: 24),
        SamplingParameters(temperature: 0.8, repeatPenalty: 1.3, seed: 99, maxTokens: 24),
    ]

    func testASessionMovedToAFreshEngineContinuesAsTheUninterruptedRun() async throws {
        let (file, tok) = try load()
        let prompt = tok.encode("Once upon a time, in a quiet village,", addSpecial: true, parseSpecial: true)
        for (n, parameters) in cases.enumerated() {
            // Fault-free reference.
            let reference = BatchScheduler(engine: try engine(file))
            reference.add(try GenerationSession(sequence: SequenceID(1), prompt: prompt, parameters: parameters,
                                                tokenizer: tok, contextLimit: 256))
            let expected = try await runAll(reference)[SequenceID(1)]!

            for cut in [1, 7, 15] {
                var got: (ids: [Int32], text: String) = ([], "")
                let first = BatchScheduler(engine: try engine(file))
                let session = try GenerationSession(sequence: SequenceID(1), prompt: prompt, parameters: parameters,
                                                    tokenizer: tok, contextLimit: 256)
                first.add(session)
                while session.generatedCount < cut, first.hasWork { collect(try await first.step(), into: &got) }
                // The pipeline dies: the session leaves without its cache.
                let moved = first.evacuate()
                XCTAssertEqual(moved.map(\.sequence), [SequenceID(1)])
                XCTAssertFalse(first.hasWork)
                session.rewind()
                let replay = session.pendingEntries(limit: 512)
                XCTAssertEqual(replay.map(\.position), Array(0..<(prompt.count + cut)), "replay starts at position 0")
                XCTAssertEqual(replay.map(\.token), session.tokens, "prompt then every generated token")
                XCTAssertEqual(replay.filter(\.wantsLogits).map(\.position), [prompt.count + cut - 1], "logits only for the newest")
                let second = BatchScheduler(engine: try engine(file))
                second.add(session)
                while second.hasWork { collect(try await second.step(), into: &got) }
                XCTAssertEqual(got.ids, expected.ids, "case \(n), cut after \(cut): no token lost, doubled or changed")
                XCTAssertEqual(got.text, expected.text, "case \(n), cut after \(cut)")
            }
        }
    }

    func testASessionResumedWhereTheEngineHoldsItContinuesAsTheUninterruptedRun() async throws {
        let (file, tok) = try load()
        let prompt = tok.encode("Once upon a time, in a quiet village,", addSpecial: true, parseSpecial: true)
        let parameters = SamplingParameters(temperature: 0.9, topK: 40, seed: 77, maxTokens: 16)
        let reference = BatchScheduler(engine: try engine(file))
        reference.add(try GenerationSession(sequence: SequenceID(1), prompt: prompt, parameters: parameters,
                                            tokenizer: tok, contextLimit: 256))
        let expected = try await runAll(reference)[SequenceID(1)]!

        // A re-plan after 6 tokens whose stages all held the sequence (mirrored KV): the session
        // moves to a new lane over an engine that kept its cache, and resumes where it held it
        // (here 3 positions short of what was processed: the tail is fed again).
        let kept = try engine(file)
        var got: (ids: [Int32], text: String) = ([], "")
        let first = BatchScheduler(engine: kept)
        let session = try GenerationSession(sequence: SequenceID(1), prompt: prompt, parameters: parameters,
                                            tokenizer: tok, contextLimit: 256)
        first.add(session)
        while session.generatedCount < 6, first.hasWork { collect(try await first.step(), into: &got) }
        _ = first.evacuate()
        let processed = session.processed
        session.rewind(to: processed - 3)
        XCTAssertEqual(session.pendingEntries(limit: 512).map(\.position), Array((processed - 3)..<session.tokens.count))
        let second = BatchScheduler(engine: kept)
        second.add(session)
        while second.hasWork { collect(try await second.step(), into: &got) }
        XCTAssertEqual(got.ids, expected.ids, "no token lost, doubled or changed")
        XCTAssertEqual(got.text, expected.text)

        // Never past what was processed, and always the newest token left to feed.
        let fresh = try GenerationSession(sequence: SequenceID(2), prompt: prompt, parameters: parameters, tokenizer: tok,
                                          contextLimit: 256)
        fresh.markProcessed(prompt.count)
        fresh.rewind(to: 1000)
        XCTAssertEqual(fresh.pendingEntries(limit: 512).map(\.position), [prompt.count - 1])
        fresh.rewind(to: 2)
        XCTAssertEqual(fresh.processed, 2)
    }

    func testARestoredSessionContinuesWithoutRepeatingText() async throws {
        let (file, tok) = try load()
        let prompt = tok.encode("The three primary colors are", addSpecial: true, parseSpecial: true)
        let parameters = SamplingParameters(temperature: 0.7, seed: 5, maxTokens: 20)
        let reference = BatchScheduler(engine: try engine(file))
        reference.add(try GenerationSession(sequence: SequenceID(3), prompt: prompt, parameters: parameters,
                                            tokenizer: tok, contextLimit: 256))
        let expected = try await runAll(reference)[SequenceID(3)]!
        // A coordinator restart: a new session rebuilt from the journal's prompt and 9 tokens.
        let restored = try GenerationSession(sequence: SequenceID(3), prompt: prompt, parameters: parameters,
                                             tokenizer: tok, contextLimit: 256)
        restored.restore(generated: Array(expected.ids.prefix(9)))
        XCTAssertEqual(restored.generatedCount, 9)
        XCTAssertEqual(restored.processed, 0)
        let scheduler = BatchScheduler(engine: try engine(file))
        scheduler.add(restored)
        let rest = try await runAll(scheduler)[SequenceID(3)]!
        XCTAssertEqual(Array(expected.ids.prefix(9)) + rest.ids, expected.ids)
        XCTAssertTrue(expected.text.hasSuffix(rest.text) && rest.text.count < expected.text.count,
                      "only the text after the 9 restored tokens comes again: \(rest.text.debugDescription)")
    }
}
