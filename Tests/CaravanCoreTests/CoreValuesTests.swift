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

    /// (The default values themselves are checked with their validation in `ParametersTests`.)
    func testGreedyIsTemperatureZeroAndChangesNothingElse() {
        let d = SamplingParameters()
        XCTAssertFalse(d.isGreedy)
        var greedy = SamplingParameters.greedy
        XCTAssertTrue(greedy.isGreedy)
        greedy.temperature = d.temperature
        XCTAssertEqual(greedy, d)
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
