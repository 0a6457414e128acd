import CaravanCore
import XCTest
@testable import Sampling

final class SamplerTests: XCTestCase {
    func testGreedyArgmaxLowestIdOnTies() throws {
        var s = try Sampler(parameters: .greedy)
        XCTAssertEqual(s.sample(logits: [0.1, 3, -1, 3, 2], history: [], position: 0), 1)
        XCTAssertEqual(s.sample(logits: [-5, -4, -6], history: [], position: 9), 1)
        // Greedy ignores the seed and position.
        for pos in 0..<20 {
            XCTAssertEqual(s.sample(logits: [1, 2, 1.5], history: [], position: pos), 1)
        }
    }

    func testGreedyWithRepeatPenalty() throws {
        var p = SamplingParameters.greedy
        p.repeatPenalty = 2
        var s = try Sampler(parameters: p)
        // Token 1 (logit 3) was just produced: 3/2 = 1.5 < 2 so token 2 wins.
        XCTAssertEqual(s.sample(logits: [0, 3, 2], history: [1], position: 1), 2)
        XCTAssertEqual(s.sample(logits: [0, 3, 2], history: [], position: 1), 1)
    }

    func testUnsafeBufferVariantAppliesPenaltiesInPlace() throws {
        var p = SamplingParameters.greedy
        p.repeatPenalty = 2
        var s = try Sampler(parameters: p)
        var logits: [Float] = [4, 1]
        let token = logits.withUnsafeMutableBufferPointer { s.sample(logits: $0, history: [0], position: 0) }
        XCTAssertEqual(token, 0)
        XCTAssertEqual(logits, [2, 1])
    }

    private func randomLogits(count: Int, seed: UInt64) -> [Float] {
        (0..<count).map { Float(CounterRandom.uniform(seed: seed, position: $0) * 8 - 4) }
    }

    func testDeterministicAcrossInstances() throws {
        let params = SamplingParameters(temperature: 1.0, topK: 0, topP: 1, minP: 0, seed: 1234)
        var a = try Sampler(parameters: params)
        var b = try Sampler(parameters: params)
        let logits = randomLogits(count: 1000, seed: 5)
        var tokensA: [Int32] = []
        for pos in 0..<200 { tokensA.append(a.sample(logits: logits, history: [], position: pos)) }
        // b visits the positions in a different order, with unrelated calls in between.
        var tokensB = [Int32](repeating: -1, count: 200)
        for pos in (0..<200).reversed() {
            _ = b.sample(logits: randomLogits(count: 50, seed: 9), history: [], position: pos + 1000)
            tokensB[pos] = b.sample(logits: logits, history: [], position: pos)
        }
        XCTAssertEqual(tokensA, tokensB)
        XCTAssertGreaterThan(Set(tokensA).count, 20, "a flat-ish distribution should give varied tokens")
    }

    func testDifferentSeedsDiffer() throws {
        let logits = randomLogits(count: 500, seed: 11)
        var a = try Sampler(parameters: SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1))
        var b = try Sampler(parameters: SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, seed: 2))
        var differing = 0
        for pos in 0..<200 where a.sample(logits: logits, history: [], position: pos) != b.sample(logits: logits, history: [], position: pos) {
            differing += 1
        }
        XCTAssertGreaterThan(differing, 150)
    }

    func testCounterRandomIsPureAndUniform() {
        XCTAssertEqual(CounterRandom.bits(seed: 42, position: 7), CounterRandom.bits(seed: 42, position: 7))
        XCTAssertNotEqual(CounterRandom.bits(seed: 42, position: 7), CounterRandom.bits(seed: 42, position: 8))
        XCTAssertNotEqual(CounterRandom.bits(seed: 42, position: 7), CounterRandom.bits(seed: 43, position: 7))
        var sum = 0.0
        var buckets = [Int](repeating: 0, count: 10)
        let n = 20_000
        for pos in 0..<n {
            let u = CounterRandom.uniform(seed: 99, position: pos)
            XCTAssert(u >= 0 && u < 1)
            sum += u
            buckets[Int(u * 10)] += 1
        }
        XCTAssertEqual(sum / Double(n), 0.5, accuracy: 0.01)
        for b in buckets { XCTAssertEqual(Double(b) / Double(n), 0.1, accuracy: 0.012) }
    }

    func testDistributionSanity() throws {
        let probs: [Double] = [0.2, 0.5, 0.3]
        let logits = probs.map { Float(log($0)) }
        var s = try Sampler(parameters: SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, seed: 2024))
        var counts = [0, 0, 0]
        let n = 20_000
        for pos in 0..<n { counts[Int(s.sample(logits: logits, history: [], position: pos))] += 1 }
        for i in 0..<3 {
            XCTAssertEqual(Double(counts[i]) / Double(n), probs[i], accuracy: 0.015, "token \(i)")
        }
    }

    func testDefaultChainOnLargeVocab() throws {
        var s = try Sampler(parameters: SamplingParameters(seed: 3))
        var logits = randomLogits(count: 131_072, seed: 21)
        logits[100] = 30
        logits[200] = 29.5
        let dist = s.distribution(logits: logits, history: [])
        XCTAssertEqual(dist.map(\.id), [100, 200])  // min-p removes the noise floor
        let token = s.sample(logits: logits, history: [], position: 0)
        XCTAssert(token == 100 || token == 200)
    }

    func testInvalidParametersRejectedByInit() {
        XCTAssertThrowsError(try Sampler(parameters: SamplingParameters(topP: 0))) { error in
            XCTAssertEqual((error as? SamplingError)?.parameter, "topP")
        }
    }
}
