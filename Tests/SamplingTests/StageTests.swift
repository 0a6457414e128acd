import CaravanCore
import XCTest
@testable import Sampling

final class StageTests: XCTestCase {
    func testPenaltiesRepeatFrequencyPresence() {
        var logits: [Float] = [2.0, -1.0, 0.5, 3.0, 1.0]
        // Window of last 4 tokens: [1, 3, 3, 0]; token 2 is outside the window, 99 out of range.
        let history: [Int32] = [2, 99, 1, 3, 3, 0]
        Penalties.apply(to: &logits, history: history, lastN: 4, repeatPenalty: 2.0,
                        frequencyPenalty: 0.1, presencePenalty: 0.5)
        // token 0: 2/2 - 0.1 - 0.5 = 0.4 ; token 1: -1*2 - 0.1 - 0.5 = -2.6
        // token 3 (twice): 3/2 - 0.2 - 0.5 = 0.8 ; tokens 2 and 4 untouched.
        XCTAssertEqual(logits[0], 0.4, accuracy: 1e-6)
        XCTAssertEqual(logits[1], -2.6, accuracy: 1e-6)
        XCTAssertEqual(logits[2], 0.5)
        XCTAssertEqual(logits[3], 0.8, accuracy: 1e-6)
        XCTAssertEqual(logits[4], 1.0)
    }

    func testPenaltiesWindowModes() {
        let base: [Float] = [1, 1, 1]
        var off = base
        Penalties.apply(to: &off, history: [0, 1], lastN: 0, repeatPenalty: 2, frequencyPenalty: 0, presencePenalty: 0)
        XCTAssertEqual(off, base)
        var whole = base
        Penalties.apply(to: &whole, history: [0, 1, 2, 2], lastN: -1, repeatPenalty: 2, frequencyPenalty: 0, presencePenalty: 0)
        XCTAssertEqual(whole, [0.5, 0.5, 0.5])
        var last1 = base
        Penalties.apply(to: &last1, history: [0, 1, 2], lastN: 1, repeatPenalty: 2, frequencyPenalty: 0, presencePenalty: 0)
        XCTAssertEqual(last1, [1, 1, 0.5])
    }

    func testTopKSelectsBestWithLowestIdOnTies() {
        let logits: [Float] = [0.1, 5, 3, 5, -2, 3, 4]
        var c = TokenCandidates()
        logits.withUnsafeBufferPointer { c.reset(topK: 4, of: $0) }
        XCTAssertEqual(c.ids, [1, 3, 6, 2])
        XCTAssertEqual(c.logits, [5, 5, 4, 3])
        XCTAssertTrue(c.isSorted)

        var unsorted = TokenCandidates(logits: logits)
        unsorted.keepTopK(3)
        XCTAssertEqual(unsorted.ids, [1, 3, 6])
        unsorted.keepTopK(0)
        XCTAssertEqual(unsorted.count, 3)
    }

    func testTopKLargeVocabMatchesFullSort() {
        var logits = [Float](repeating: 0, count: 131_072)
        for i in 0..<logits.count {
            logits[i] = Float(CounterRandom.uniform(seed: 7, position: i) * 20 - 10)
        }
        logits[777] = 50
        var c = TokenCandidates()
        logits.withUnsafeBufferPointer { c.reset(topK: 40, of: $0) }
        let expected = logits.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
            .prefix(40).map { Int32($0.offset) }
        XCTAssertEqual(c.ids, expected)
        XCTAssertEqual(c.ids.first, 777)
    }

    func testTopP() {
        // Probabilities proportional to exp(logit): ln(0.5), ln(0.3), ln(0.15), ln(0.05).
        let logits: [Float] = [logf(0.15), logf(0.5), logf(0.05), logf(0.3)]
        var a = TokenCandidates(logits: logits)
        a.keepTopP(0.8)  // 0.5 + 0.3 = 0.8 reaches p
        XCTAssertEqual(a.ids, [1, 3])
        var b = TokenCandidates(logits: logits)
        b.keepTopP(0.81)
        XCTAssertEqual(b.ids, [1, 3, 0])
        var c = TokenCandidates(logits: logits)
        c.keepTopP(0.1)  // at least one token
        XCTAssertEqual(c.ids, [1])
        var d = TokenCandidates(logits: logits)
        d.keepTopP(1)
        XCTAssertEqual(d.ids, [0, 1, 2, 3])  // no-op keeps vocabulary order
        XCTAssertFalse(d.isSorted)
    }

    func testMinP() {
        let logits: [Float] = [logf(0.15), logf(0.5), logf(0.05), logf(0.3)]
        var a = TokenCandidates(logits: logits)
        a.keepMinP(0.3)  // threshold 0.15: keeps 0.15, 0.5, 0.3 in order
        XCTAssertEqual(a.ids, [0, 1, 3])
        var b = TokenCandidates(logits: logits)
        b.keepMinP(0.61)  // threshold 0.305
        XCTAssertEqual(b.ids, [1])
        var c = TokenCandidates(logits: logits)
        c.keepMinP(1)  // only the max survives
        XCTAssertEqual(c.ids, [1])
    }

    func testTemperatureAndProbabilities() {
        var c = TokenCandidates(logits: [2, 0, 1])
        c.applyTemperature(0.5)
        XCTAssertEqual(c.logits, [4, 0, 2])
        let p = c.probabilities()
        let z = exp(4.0) + exp(0.0) + exp(2.0)
        XCTAssertEqual(Double(p[0]), exp(4.0) / z, accuracy: 1e-6)
        XCTAssertEqual(Double(p[1]), 1 / z, accuracy: 1e-6)
        XCTAssertEqual(Double(p[2]), exp(2.0) / z, accuracy: 1e-6)
    }

    func testDrawInverseCDF() {
        let c = TokenCandidates(logits: [logf(0.2), logf(0.5), logf(0.3)])
        XCTAssertEqual(c.draw(uniform: 0.0), 0)
        XCTAssertEqual(c.draw(uniform: 0.19), 0)
        XCTAssertEqual(c.draw(uniform: 0.21), 1)
        XCTAssertEqual(c.draw(uniform: 0.69), 1)
        XCTAssertEqual(c.draw(uniform: 0.71), 2)
        XCTAssertEqual(c.draw(uniform: 0.999999), 2)
        XCTAssertNil(TokenCandidates().draw(uniform: 0.5))
    }

    func testFullChainDistribution() throws {
        let probs: [Float] = [0.5, 0.3, 0.1, 0.06, 0.04]
        let logits = probs.map { logf($0) }
        var s = try Sampler(parameters: SamplingParameters(temperature: 1, topK: 3, topP: 0.85, minP: 0.25))
        let dist = s.distribution(logits: logits, history: [])
        // After top-k: {0.5,0.3,0.1}/0.9 = {0.5556, 0.3333, 0.1111}; top-p 0.85 keeps 0 and 1 (0.889);
        // min-p 0.25: 0.3/0.5 = 0.6 keeps both. Final: 0.625 / 0.375.
        XCTAssertEqual(dist.map(\.id), [0, 1])
        XCTAssertEqual(dist[0].probability, 0.625, accuracy: 1e-5)
        XCTAssertEqual(dist[1].probability, 0.375, accuracy: 1e-5)

        var hot = try Sampler(parameters: SamplingParameters(temperature: 2, topK: 0, topP: 1, minP: 0))
        let d2 = hot.distribution(logits: [logf(0.64), logf(0.36)], history: [])
        // temperature 2 -> sqrt: 0.8 / 0.6 normalized = 4/7, 3/7
        XCTAssertEqual(d2[0].probability, 4.0 / 7.0, accuracy: 1e-5)
        XCTAssertEqual(d2[1].probability, 3.0 / 7.0, accuracy: 1e-5)
    }
}

final class TopKOrderTests: XCTestCase {
    func testKeepTopKOnFilteredUnsortedCandidatesUsesRealIds() {
        // After min-p the candidates are unsorted and ids are not positions.
        var c = TokenCandidates(logits: [0.0, 5.0, -9.0, 5.0, 4.0, -9.5, 4.5])
        c.keepMinP(0.001)  // drops ids 2 and 5: threshold 5 + ln(0.001) = -1.9
        XCTAssertEqual(c.ids, [0, 1, 3, 4, 6])
        XCTAssertFalse(c.isSorted)
        c.keepTopK(3)
        XCTAssertEqual(c.ids, [1, 3, 6])
        XCTAssertEqual(c.logits, [5.0, 5.0, 4.5])
        XCTAssertTrue(c.isSorted)
    }
}
