import CaravanCore
import CaravanWire
import ClusterSupport
import Foundation
import GGUF
import Inference
import Llama
import Sampling
import TestSupport
import Tokenizer
import XCTest
import ZeroMQ

/// A one-stage "pipeline" in process that goes through the real wire conversions both ways: the
/// step is encoded and decoded (sampling requests validated), the stage runs, and its result comes
/// back either as logits (the coordinator samples) or sampled on the stage, exactly like
/// `StageRuntime` does it.
private final class WireLoopEngine: ForwardEngine, @unchecked Sendable {
    let stage: LlamaStage
    let sampleOnStage: Bool
    let codec = WireCodec()
    let vocabularySize: Int
    let contextLimit: Int
    /// Bytes of every result message (all frames) and whether it carried sampled tokens.
    private(set) var results: [(bytes: Int, sampled: Bool)] = []

    init(file: GGUFFile, sampleOnStage: Bool) throws {
        stage = try LlamaStage(file: file, contextLimit: 256, runner: ComputeThreadPool(threads: 2))
        self.sampleOnStage = sampleOnStage
        vocabularySize = stage.configuration.vocabularySize
        contextLimit = stage.contextLimit
    }

    func forward(_ batch: StageBatch) async throws -> StageOutput {
        let step = ActivationStep(tokens: batch, jobID: "t", planEpoch: 1, stepID: 1)
        guard case .activation(let received, _) = try codec.decode(try codec.encode(step)) else { throw CocoaError(.coderInvalidValue) }
        let stageBatch = try StageBatch(step: received, embedsTokens: true, hiddenWidth: stage.configuration.embeddingLength)
        var output = try stage.forward(stageBatch)
        if sampleOnStage { output = try output.sampledOnStage(batch: stageBatch) }
        let outcome: StepOutcome
        switch output {
        case let .logits(values, entryIndices, vocabulary):
            outcome = try received.outcome(logits: values, entryIndices: entryIndices, vocabulary: vocabulary, dtype: .f32)
        case let .sampled(rows, entryIndices):
            outcome = received.outcome(sampled: rows, entryIndices: entryIndices)
        case .hidden:
            throw CocoaError(.coderInvalidValue)
        }
        let frames = try codec.encode(outcome)
        results.append((frames.reduce(0) { $0 + $1.count }, !outcome.tokens.isEmpty))
        guard case .stepResult(let back, _) = try codec.decode(frames) else { throw CocoaError(.coderInvalidValue) }
        return try StageOutput(outcome: back, batch: batch, vocabulary: vocabularySize)
    }

    func release(_ sequence: SequenceID) async { stage.removeSequence(sequence) }
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
    private func run(_ engine: WireLoopEngine, tok: Tokenizer, parameters: [SamplingParameters],
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

    func testSamplingOnTheStageEqualsSamplingOnTheCoordinatorBitForBit() async throws {
        let (file, tok) = try load()
        let coordinator = try WireLoopEngine(file: file, sampleOnStage: false)
        let onStage = try WireLoopEngine(file: file, sampleOnStage: true)
        let expected = try await run(coordinator, tok: tok, parameters: cases)
        let got = try await run(onStage, tok: tok, parameters: cases)
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

        // The same runs with a fault after a few steps (replay from position 0) continue identically.
        let replayed = try await run(try WireLoopEngine(file: file, sampleOnStage: true), tok: tok, parameters: cases,
                                     rewindAfter: 9)
        XCTAssertEqual(replayed, expected)
    }
}
