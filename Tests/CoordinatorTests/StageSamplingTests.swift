import CaravanCore
import CaravanTesting
import CaravanWire
import Foundation
import GGUF
import Inference
import Llama
import Sampling
import TestSupport
import Tokenizer
import XCTest
import ZeroMQ

/// The coordinator's sampling: every row's sampling request removed from the step, so the last
/// stage sends logits back and the ``BatchScheduler`` samples them here.
private final class LogitsOnly: ForwardEngine, Sendable {
    let inner: any ForwardEngine
    var vocabularySize: Int { inner.vocabularySize }
    var contextLimit: Int { inner.contextLimit }

    init(_ inner: any ForwardEngine) { self.inner = inner }

    func forward(_ batch: StageBatch) async throws -> StageOutput {
        var stripped = batch
        for i in stripped.entries.indices { stripped.entries[i].sampling = nil }
        return try await inner.forward(stripped)
    }

    func release(_ sequence: SequenceID) async { await inner.release(sequence) }
}

final class StageSamplingTests: XCTestCase {
    private static let loaded: (GGUFFile, Tokenizer)? = {
        guard let file = try? GGUFFile(path: TestModel.path), let tok = try? Tokenizer(gguf: file) else { return nil }
        return (file, tok)
    }()

    private func load() throws -> (GGUFFile, Tokenizer) {
        _ = try TestModel.requirePath()
        return try XCTUnwrap(Self.loaded)
    }

    private var cases: [SamplingParameters] {
        var withLogprobs = SamplingParameters(temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed: 77, maxTokens: 24)
        withLogprobs.topLogprobs = 5
        var greedyLogprobs = SamplingParameters(temperature: 0, maxTokens: 12)
        greedyLogprobs.logprobs = true
        return [
            SamplingParameters(temperature: 0, maxTokens: 24),
            withLogprobs,
            greedyLogprobs,
            SamplingParameters(temperature: 1.1, topK: 0, topP: 0.8, minP: 0, seed: 5, maxTokens: 24),
            SamplingParameters(temperature: 0.7, topK: 10, topP: 1, minP: 0.1, seed: 0, maxTokens: 24),
            // Penalty windows shorter than the sequence (prompt + generated), and the whole history.
            SamplingParameters(temperature: 0, repeatPenalty: 1.5, repeatLastN: 6, frequencyPenalty: 0.2, maxTokens: 24),
            SamplingParameters(temperature: 0.9, repeatPenalty: 1.3, repeatLastN: -1, presencePenalty: 0.4, seed: 3, maxTokens: 24),
        ]
    }

    /// Every session of `parameters` run together: generated ids, text, finish reason, logprobs.
    private func run(_ engine: any ForwardEngine, tok: Tokenizer, parameters: [SamplingParameters],
                     rewindAfter: Int? = nil) async throws -> [[String]] {
        let prompts = ["Once upon a time,", "The capital of France is", "List three colors:"]
        let scheduler = BatchScheduler(engine: engine)
        var sessions: [GenerationSession] = []
        for (i, p) in parameters.enumerated() {
            let prompt = tok.encode(prompts[i % prompts.count], addSpecial: true, parseSpecial: true)
            let s = try GenerationSession(sequence: SequenceID(UInt64(i + 1)), prompt: prompt, parameters: p, tokenizer: tok,
                                          contextLimit: engine.contextLimit)
            sessions.append(s)
            scheduler.add(s)
        }
        var text = [String](repeating: "", count: parameters.count)
        var steps = 0
        while scheduler.hasWork {
            steps += 1
            if steps == rewindAfter {
                // A fault: every session replays from position 0 on a fresh cache.
                for s in sessions { s.rewind(); await engine.release(s.sequence) }
            }
            for (seq, event) in try await scheduler.step() {
                switch event {
                case let .token(_, t): text[Int(seq.rawValue) - 1] += t
                case let .finished(reason, t): text[Int(seq.rawValue) - 1] += t + "|\(reason)"
                }
            }
        }
        return sessions.enumerated().map { i, s in
            [s.generatedTokens.map(String.init).joined(separator: " "), text[i],
             s.logprobs.map { "\($0.logprob.bitPattern):" + $0.top.map { "\($0.id)=\($0.logprob.bitPattern)" }.joined(separator: ",") }
                .joined(separator: ";")]
        }
    }

    /// The real worker code (a ``StageRuntime`` with every layer, over the in-memory transport,
    /// driven by the coordinator's ``RemotePipelineEngine``): once with the coordinator sampling the
    /// logits the stage sends back, once with the stage sampling the rows' requests itself.
    func testSamplingOnTheStageEqualsSamplingOnTheCoordinatorBitForBit() async throws {
        let (_, tok) = try load()
        let path = try TestModel.requirePath()
        let coordinator = try await InProcessPipeline(modelPath: path)
        let onStage = try await InProcessPipeline(modelPath: path)
        let expected = try await run(LogitsOnly(coordinator.engine), tok: tok, parameters: cases)
        let got = try await run(onStage.engine, tok: tok, parameters: cases)
        for (n, (e, g)) in zip(expected, got).enumerated() {
            XCTAssertEqual(g, e, "case \(n): ids, text and logprob bits")
        }
        XCTAssertFalse(expected[1][2].isEmpty, "logprobs were reported")
        XCTAssertTrue(coordinator.results.allSatisfy { !$0.sampled })
        XCTAssertTrue(onStage.results.allSatisfy(\.sampled))
        // What one decode step of these sessions sends back.
        let logitsBytes = coordinator.results.last!.bytes
        let sampledBytes = onStage.results.last!.bytes
        print("result message of the last decode step: logits \(logitsBytes) B, sampled \(sampledBytes) B")
        XCTAssertGreaterThan(logitsBytes, 4 * tok.vocabularySize)
        XCTAssertLessThan(sampledBytes * 1000, logitsBytes)
        await coordinator.close()
        await onStage.close()

        // The same runs with a fault after a few steps (replay from position 0) continue identically.
        let fresh = try await InProcessPipeline(modelPath: path)
        let replayed = try await run(fresh.engine, tok: tok, parameters: cases, rewindAfter: 9)
        XCTAssertEqual(replayed, expected)
        await fresh.close()
    }
}
