import CaravanCore
import Foundation
import XCTest
@testable import Sampling

/// Sampling a row from a stage request (the penalty window only) gives exactly what sampling with
/// the whole history gives, and the reported logprobs are the raw log-softmax.
final class RowSamplingTests: XCTestCase {
    private let vocabulary = 512

    private func logits(seed: UInt64) -> [Float] {
        (0..<vocabulary).map { Float(CounterRandom.uniform(seed: seed, position: $0) * 12 - 6) }
    }

    /// A long history that repeats a few tokens, with ids all over the vocabulary.
    private func history(count: Int, seed: UInt64) -> [Int32] {
        (0..<count).map { i in
            let u = CounterRandom.uniform(seed: seed &+ 77, position: i)
            return i % 3 == 0 ? Int32(i % 7) : Int32(u * Double(vocabulary))
        }
    }

    private let cases: [SamplingParameters] = [
        SamplingParameters(temperature: 0, seed: 1),
        SamplingParameters(temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed: 42),
        SamplingParameters(temperature: 1.3, topK: 0, topP: 0.7, minP: 0, seed: 7),
        SamplingParameters(temperature: 0.6, topK: 5, topP: 1, minP: 0.2, seed: 0),
        SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, seed: .max),
        // Penalties with windows shorter than, equal to and longer than the history, and -1.
        SamplingParameters(temperature: 0, repeatPenalty: 1.5, repeatLastN: 16, frequencyPenalty: 0.3, seed: 3),
        SamplingParameters(temperature: 0.9, repeatPenalty: 1.3, repeatLastN: 64, presencePenalty: 0.5, seed: 11),
        SamplingParameters(temperature: 0.7, repeatPenalty: 1.2, repeatLastN: -1, frequencyPenalty: 0.2, seed: 5),
        SamplingParameters(temperature: 0.7, repeatPenalty: 2, repeatLastN: 1000, seed: 5),
        SamplingParameters(temperature: 0, repeatPenalty: 1.1, repeatLastN: 0, seed: 9),
    ]

    func testTheWindowCarriesOnlyWhatThePenaltiesRead() {
        let h = history(count: 300, seed: 1)
        XCTAssertEqual(SamplingParameters(repeatPenalty: 1.1, repeatLastN: 16).stageRequest(after: h).history, Array(h.suffix(16)))
        XCTAssertEqual(SamplingParameters(repeatPenalty: 1.1, repeatLastN: -1).stageRequest(after: h).history, h)
        XCTAssertEqual(SamplingParameters(repeatPenalty: 1.1, repeatLastN: 1000).stageRequest(after: h).history, h)
        XCTAssertEqual(SamplingParameters(repeatPenalty: 1.1, repeatLastN: 0).stageRequest(after: h).history, [])
        XCTAssertEqual(SamplingParameters(repeatLastN: 64).stageRequest(after: h).history, [], "no penalty is active")
        XCTAssertEqual(SamplingParameters(frequencyPenalty: 0.1).stageRequest(after: h).history.count, 64)
        XCTAssertEqual(SamplingParameters(presencePenalty: -0.1).stageRequest(after: h).history.count, 64)
    }

    func testARequestCarriesTheChainAndRebuildsTheSameParameters() throws {
        var p = SamplingParameters(temperature: 0.4, topK: 12, topP: 0.9, minP: 0.1, repeatPenalty: 1.2, repeatLastN: 8,
                                   frequencyPenalty: 0.1, presencePenalty: 0.2, seed: 99, maxTokens: 7, stop: ["x"])
        p.topLogprobs = 3
        let r = p.stageRequest(after: [1, 2, 3])
        XCTAssertTrue(r.wantsLogprobs)
        var back = r.parameters
        XCTAssertNoThrow(try back.validate())
        XCTAssertEqual(back.maxTokens, SamplingParameters().maxTokens, "limits are not part of a request")
        XCTAssertEqual(back.stop, [])
        back.maxTokens = p.maxTokens
        back.stop = p.stop
        XCTAssertEqual(back, p)
    }

    func testStageSamplingEqualsSamplingWithTheWholeHistory() throws {
        for (n, parameters) in cases.enumerated() {
            var whole = try Sampler(parameters: parameters)
            for trial in 0..<12 {
                let h = history(count: 20 + 23 * trial, seed: UInt64(trial))
                let position = h.count
                let raw = logits(seed: UInt64(100 * n + trial))
                // The coordinator's way before: every token of the sequence as history.
                var expectedLogits = raw
                let expected = expectedLogits.withUnsafeMutableBufferPointer {
                    whole.sample(logits: $0, history: h, position: position)
                }
                // The stage's way: a fresh sampler from the request, the window only.
                let request = parameters.stageRequest(after: h)
                var stage = try Sampler(request: request)
                var stageLogits = raw
                let row = stageLogits.withUnsafeMutableBufferPointer {
                    stage.sampleRow(logits: $0, history: request.history, position: position)
                }
                XCTAssertEqual(row.token, expected, "case \(n), trial \(trial)")
                XCTAssertEqual(stageLogits, expectedLogits, "case \(n), trial \(trial): the same penalized logits")
                XCTAssertNil(row.logprobs, "not asked for")
            }
        }
    }

    func testPenaltiesReallyReachBeyondADefaultWindowWhenAskedTo() throws {
        // Token 3 appears only early in the history: a window of 8 does not see it, -1 does.
        let h: [Int32] = [3] + Array(repeating: 1, count: 20)
        var raw = [Float](repeating: 0, count: 8)
        raw[3] = 5
        raw[2] = 4
        for (lastN, expected) in [(8, Int32(3)), (-1, Int32(2))] {
            let p = SamplingParameters(temperature: 0, repeatPenalty: 2, repeatLastN: lastN)
            let request = p.stageRequest(after: h)
            var s = try Sampler(request: request)
            var copy = raw
            XCTAssertEqual(copy.withUnsafeMutableBufferPointer { s.sampleRow(logits: $0, history: request.history, position: 21).token },
                           expected, "repeatLastN \(lastN)")
        }
    }

    func testLogprobsAreTheRawLogSoftmaxAndIgnoreThePenalties() throws {
        var p = SamplingParameters(temperature: 0, repeatPenalty: 3, repeatLastN: 4)
        p.topLogprobs = 4
        let raw = logits(seed: 5)
        let best = raw.indices.max { raw[$0] < raw[$1] }!
        // The best token was just produced, so the penalty pushes greedy elsewhere.
        let h: [Int32] = [Int32(best)]
        var s = try Sampler(request: p.stageRequest(after: h))
        var copy = raw
        let row = copy.withUnsafeMutableBufferPointer { s.sampleRow(logits: $0, history: h, position: 1) }
        XCTAssertNotEqual(Int(row.token), best)
        let m = Double(raw.max()!)
        let lse = m + log(raw.reduce(0.0) { $0 + exp(Double($1) - m) })
        let lp = try XCTUnwrap(row.logprobs)
        XCTAssertEqual(Double(lp.logprob), Double(raw[Int(row.token)]) - lse, accuracy: 1e-4)
        let top4 = raw.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }.prefix(4)
        XCTAssertEqual(lp.top.map { Int($0.id) }, top4.map(\.offset))
        XCTAssertEqual(lp.top[0].id, Int32(best), "the raw distribution, not the penalized one")
        for (alt, e) in zip(lp.top, top4) { XCTAssertEqual(Double(alt.logprob), Double(e.element) - lse, accuracy: 1e-4) }
        // logprobs without alternatives.
        var q = SamplingParameters.greedy
        q.logprobs = true
        var g = try Sampler(parameters: q)
        var again = raw
        let plain = again.withUnsafeMutableBufferPointer { g.sampleRow(logits: $0, history: [], position: 0) }
        XCTAssertEqual(plain.logprobs?.top, [])
        XCTAssertEqual(Int(plain.token), best)
    }
}
