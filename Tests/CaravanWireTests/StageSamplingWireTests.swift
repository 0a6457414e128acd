import CaravanCore
import CaravanWire
import Foundation
import Sampling
import XCTest
import ZeroMQ

/// Sampling requests and sampled results on the wire: round trips, validation of what a peer
/// sends (an error, never a crash), and the size of a decode step's result.
final class StageSamplingWireTests: XCTestCase {
    private let request: SamplingRequest = {
        var p = SamplingParameters(temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.2,
                                   repeatLastN: 4, frequencyPenalty: 0.1, presencePenalty: 0, seed: 12345)
        p.logprobs = false
        p.topLogprobs = 2
        return SamplingRequest(parameters: p, history: [7, 8, 9, 8])
    }()

    private func batch(_ sampling: SamplingRequest?) -> StageBatch {
        StageBatch(entries: [
            StageEntry(sequence: SequenceID(1), position: 0, token: 5),
            StageEntry(sequence: SequenceID(1), position: 1, token: 6, wantsLogits: true, sampling: sampling),
        ])
    }

    /// Encodes and decodes `step` with a codec, as a stage receives it.
    private func received(_ step: ActivationStep) throws -> ActivationStep {
        let codec = WireCodec()
        guard case .activation(let s, _) = try codec.decode(try codec.encode(step)) else { throw CocoaError(.coderInvalidValue) }
        return s
    }

    func testRequestsTravelThroughEveryStage() throws {
        let b = batch(request)
        let step = try received(ActivationStep(tokens: b, pipelineLabel: "j", planEpoch: 1, stepID: 1))
        XCTAssertEqual(try StageBatch(step: step, embedsTokens: true, hiddenWidth: 2).entries, b.entries)
        let next = try received(try step.forwarding(hidden: [1, 2, 3, 4], rows: 2, width: 2, dtype: .f32))
        XCTAssertEqual(try StageBatch(step: next, embedsTokens: false, hiddenWidth: 2).entries.map(\.sampling), [nil, request])
        // Logits rows sent back do not echo the request.
        let outcome = try step.outcome(logits: [1, 2, 3], entryIndices: [1], vocabulary: 3, dtype: .f32)
        XCTAssertNil(outcome.logitsRows[0].sampling)
    }

    func testInvalidRequestsFromTheWireAreErrors() throws {
        func conversionError(_ edit: (inout Caravan_V1_SamplingRequest) -> Void, sample: Bool = true) throws -> StepConversionError? {
            var wire = request.wire
            edit(&wire)
            let row = SequenceRow(sequenceID: 1, position: 0, tokenID: 5, sample: sample, sampling: wire)
            let step = try received(ActivationStep(pipelineLabel: "j", planEpoch: 1, stepID: 1, rows: [row], tensor: nil))
            do {
                _ = try StageBatch(step: step, embedsTokens: true, hiddenWidth: 2)
                return nil
            } catch {
                return error
            }
        }
        XCTAssertNil(try conversionError { _ in })
        let bad: [(String, (inout Caravan_V1_SamplingRequest) -> Void)] = [
            ("topP", { $0.topP = 0 }),  // proto3's default: an unset top_p is refused, not "off"
            ("temperature", { $0.temperature = -1 }),
            ("temperature", { $0.temperature = .nan }),
            ("minP", { $0.minP = 2 }),
            ("topK", { $0.topK = -3 }),
            ("repeatPenalty", { $0.repeatPenalty = 0 }),
            ("repeatLastN", { $0.repeatLastN = -2 }),
            ("frequencyPenalty", { $0.frequencyPenalty = .infinity }),
            ("topLogprobs", { $0.topLogprobs = 21 }),
            ("history", { $0.history.append(UInt32.max) }),
        ]
        for (name, edit) in bad {
            let error = try conversionError(edit)
            guard case .invalidSampling(0, let reason)? = error else { XCTFail("\(name): \(String(describing: error))"); continue }
            XCTAssertTrue(reason.contains(name), "\(name): \(reason)")
        }
        guard case .invalidSampling? = try conversionError({ _ in }, sample: false) else {
            return XCTFail("a request on a row that does not sample")
        }
    }

    func testSampledResultsMapOntoTheRowsAndAreChecked() throws {
        let b = batch(request)
        let step = ActivationStep(tokens: b, pipelineLabel: "j", planEpoch: 1, stepID: 1)
        let row = SampledRow(token: 2, logprobs: SampledLogprobs(logprob: -0.5, top: [.init(id: 2, logprob: -0.5), .init(id: 0, logprob: -1.5)]))
        let codec = WireCodec()
        func back(_ outcome: StepOutcome) throws -> StepOutcome {
            guard case .stepResult(let o, _) = try codec.decode(try codec.encode(outcome)) else { throw CocoaError(.coderInvalidValue) }
            return o
        }
        let outcome = try back(step.outcome(sampled: [row], entryIndices: [1]))
        XCTAssertEqual(outcome.tokens.map(\.position), [2], "the new token's position")
        guard case let .sampled(rows, indices) = try StageOutput(outcome: outcome, batch: b, vocabulary: 3) else {
            return XCTFail("expected sampled tokens")
        }
        XCTAssertEqual(rows, [row])
        XCTAssertEqual(indices, [1])

        func rejected(_ edit: (inout StepOutcome) -> Void, batch: StageBatch? = nil, vocabulary: Int = 3) throws -> Bool {
            var o = outcome
            edit(&o)
            do {
                _ = try StageOutput(outcome: try back(o), batch: batch ?? b, vocabulary: vocabulary)
                return false
            } catch let error as StepConversionError {
                guard case .sampledMismatch = error else { return false }
                return true
            }
        }
        XCTAssertFalse(try rejected { _ in })
        XCTAssertTrue(try rejected({ _ in }, vocabulary: 2), "token outside the vocabulary")
        XCTAssertTrue(try rejected { $0.tokens[0].position = 1 }, "wrong position")
        XCTAssertTrue(try rejected { $0.tokens[0].sequenceID = 9 }, "unknown sequence")
        XCTAssertTrue(try rejected { $0.tokens.append($0.tokens[0]) }, "twice")
        XCTAssertTrue(try rejected { $0.tokens[0].logprob = nil }, "logprobs missing")
        XCTAssertTrue(try rejected { $0.tokens[0].topLogprobs.append((tokenID: 1, logprob: -2)) }, "more alternatives than asked")
        XCTAssertTrue(try rejected { $0.tokens[0].topLogprobs[1].tokenID = 7 }, "alternative outside the vocabulary")
        var plain = request
        plain.parameters.topLogprobs = 0
        XCTAssertTrue(try rejected({ _ in }, batch: batch(plain)), "logprobs nobody asked for")
        XCTAssertTrue(try rejected({ _ in }, batch: batch(nil)), "tokens for a row that asked for logits")
        XCTAssertTrue(try rejected { $0.logits = try? ActivationTensor(values: [1, 2, 3], shape: [1, 3], dtype: .f32); $0.logitsRows = [step.rows[1]] },
                      "tokens and logits together")
    }

    func testADecodeStepResultShrinksFromTheLogitsRowToAFewBytes() throws {
        let vocabulary = 49_152  // SmolLM2
        let b = batch(request)
        let step = ActivationStep(tokens: b, pipelineLabel: "job-0123456789", planEpoch: 3, stepID: 123_456)
        let codec = WireCodec()
        func size(_ outcome: StepOutcome) throws -> Int { try codec.encode(outcome).reduce(0) { $0 + $1.count } }
        let logits = try size(step.outcome(logits: [Float](repeating: 0.5, count: vocabulary), entryIndices: [1],
                                           vocabulary: vocabulary, dtype: .f32))
        let sampled = try size(step.outcome(sampled: [SampledRow(token: 48_000)], entryIndices: [1]))
        let top5 = try size(step.outcome(sampled: [SampledRow(token: 48_000, logprobs: SampledLogprobs(
            logprob: -0.25, top: (0..<5).map { SampledAlternative(id: 48_000 + Int32($0), logprob: -Float($0)) }))], entryIndices: [1]))
        print("one decode row back to the coordinator: logits \(logits) B, sampled \(sampled) B, sampled with 5 top logprobs \(top5) B")
        XCTAssertGreaterThan(logits, 4 * vocabulary)
        XCTAssertLessThan(sampled, 64)
        XCTAssertLessThan(top5, 128)
    }
}
