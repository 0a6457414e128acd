import CaravanCore
import Foundation
import XCTest

final class CoreValuesTests: XCTestCase {
    func testCachedLayersAreSortedAndUnique() {
        let c = CachedLayers(modelSHA256: "ab", layers: [7, 2, 7, 0, 2], embedding: true, output: false)
        XCTAssertEqual(c.layers, [0, 2, 7])
        XCTAssertTrue(c.embedding)
        XCTAssertFalse(c.output)
        XCTAssertEqual(c, CachedLayers(modelSHA256: "ab", layers: [0, 2, 7], embedding: true, output: false))
    }

    func testDefaultsAreLlamaCppsAndGreedyIsTemperatureZero() {
        let d = SamplingParameters()
        XCTAssertEqual(d.temperature, 0.8)
        XCTAssertEqual(d.topK, 40)
        XCTAssertEqual(d.topP, 0.95)
        XCTAssertEqual(d.minP, 0.05)
        XCTAssertEqual(d.repeatPenalty, 1)
        XCTAssertEqual(d.repeatLastN, 64)
        XCTAssertFalse(d.isGreedy)
        XCTAssertTrue(SamplingParameters.greedy.isGreedy)
        XCTAssertEqual(SamplingParameters.greedy.topK, d.topK, "greedy changes the temperature only")
    }

    func testDecodingKeepsDefaultsForAbsentKeysAndReadsPresentOnes() throws {
        let empty = try JSONDecoder().decode(SamplingParameters.self, from: Data("{}".utf8))
        XCTAssertEqual(empty, SamplingParameters())
        let some = try JSONDecoder().decode(SamplingParameters.self, from: Data("""
            {"temperature": 0, "topK": 5, "stop": ["\\n"], "seed": 42, "logprobs": true, "topLogprobs": 3,
             "presencePenalty": 0.5}
            """.utf8))
        XCTAssertTrue(some.isGreedy)
        XCTAssertEqual(some.topK, 5)
        XCTAssertEqual(some.stop, ["\n"])
        XCTAssertEqual(some.seed, 42)
        XCTAssertTrue(some.logprobs)
        XCTAssertEqual(some.topLogprobs, 3)
        XCTAssertEqual(some.presencePenalty, 0.5)
        XCTAssertEqual(some.topP, SamplingParameters().topP)
        var round = some
        round.maxTokens = 7
        XCTAssertEqual(try JSONDecoder().decode(SamplingParameters.self, from: JSONEncoder().encode(round)), round)
        XCTAssertThrowsError(try JSONDecoder().decode(SamplingParameters.self, from: Data(#"{"topK": "many"}"#.utf8)))
    }

    func testARequestWantsLogprobsWhenEitherKindIsAskedFor() {
        var p = SamplingParameters()
        XCTAssertFalse(SamplingRequest(parameters: p, history: []).wantsLogprobs)
        p.topLogprobs = 2
        XCTAssertTrue(SamplingRequest(parameters: p, history: []).wantsLogprobs)
        p.topLogprobs = 0
        p.logprobs = true
        XCTAssertTrue(SamplingRequest(parameters: p, history: [1, 2]).wantsLogprobs)
    }
}
