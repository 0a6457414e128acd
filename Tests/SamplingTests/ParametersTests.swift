import CaravanCore
import Foundation
import XCTest
@testable import Sampling

final class ParametersTests: XCTestCase {
    func testDefaultsMatchLlamaCppCLI() throws {
        let p = SamplingParameters()
        XCTAssertEqual(p.temperature, 0.8)
        XCTAssertEqual(p.topK, 40)
        XCTAssertEqual(p.topP, 0.95)
        XCTAssertEqual(p.minP, 0.05)
        XCTAssertEqual(p.repeatPenalty, 1.0)
        XCTAssertEqual(p.repeatLastN, 64)
        XCTAssertEqual(p.frequencyPenalty, 0)
        XCTAssertEqual(p.presencePenalty, 0)
        XCTAssertNoThrow(try p.validate())
        XCTAssertNoThrow(try SamplingParameters.greedy.validate())
    }

    private func assertInvalid(_ p: SamplingParameters, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            try p.validate()
            XCTFail("expected \(name) to be rejected", file: file, line: line)
        } catch {
            XCTAssertEqual(error.parameter, name, file: file, line: line)
            XCTAssertTrue(error.description.contains("'\(name)'"), error.description, file: file, line: line)
        }
    }

    func testValidationNamesTheParameter() {
        assertInvalid(SamplingParameters(temperature: -0.1), "temperature")
        assertInvalid(SamplingParameters(temperature: .nan), "temperature")
        assertInvalid(SamplingParameters(temperature: .infinity), "temperature")
        assertInvalid(SamplingParameters(topK: -1), "topK")
        assertInvalid(SamplingParameters(topP: 0), "topP")
        assertInvalid(SamplingParameters(topP: 1.01), "topP")
        assertInvalid(SamplingParameters(topP: .nan), "topP")
        assertInvalid(SamplingParameters(minP: -0.01), "minP")
        assertInvalid(SamplingParameters(minP: 1.5), "minP")
        assertInvalid(SamplingParameters(repeatPenalty: 0), "repeatPenalty")
        assertInvalid(SamplingParameters(repeatPenalty: -1), "repeatPenalty")
        assertInvalid(SamplingParameters(repeatPenalty: .infinity), "repeatPenalty")
        assertInvalid(SamplingParameters(repeatLastN: -2), "repeatLastN")
        assertInvalid(SamplingParameters(frequencyPenalty: .nan), "frequencyPenalty")
        assertInvalid(SamplingParameters(presencePenalty: -.infinity), "presencePenalty")
        assertInvalid(SamplingParameters(frequencyPenalty: 2.01), "frequencyPenalty")
        assertInvalid(SamplingParameters(presencePenalty: -2.5), "presencePenalty")
        assertInvalid(SamplingParameters(maxTokens: 0), "maxTokens")
        assertInvalid(SamplingParameters(stop: ["</s>", ""]), "stop")
    }

    /// Stop strings come from clients: their count and length are bounded (the matcher checks
    /// each at every token and the stream holds back up to the longest).
    func testStopStringsAreBoundedInCountAndLength() {
        let most = SamplingParameters.maxStopStrings
        let longest = SamplingParameters.maxStopStringBytes
        XCTAssertNoThrow(try SamplingParameters(stop: (0..<most).map { "s\($0)" }).validate())
        XCTAssertNoThrow(try SamplingParameters(stop: [String(repeating: "x", count: longest)]).validate())
        assertInvalid(SamplingParameters(stop: (0...most).map { "s\($0)" }), "stop")
        assertInvalid(SamplingParameters(stop: ["ok", String(repeating: "é", count: longest / 2 + 1)]), "stop")
        assertInvalid(SamplingParameters(stop: [String(repeating: "x", count: 1 << 20)]), "stop")
    }

    func testValidEdgeValues() {
        XCTAssertNoThrow(try SamplingParameters(temperature: 0, topK: 0, topP: 1, minP: 0, repeatLastN: -1,
                                                frequencyPenalty: -0.5, presencePenalty: 1, maxTokens: 1).validate())
        XCTAssertNoThrow(try SamplingParameters(minP: 1).validate())
        XCTAssertNoThrow(try SamplingParameters(frequencyPenalty: 2, presencePenalty: -2).validate(), "OpenAI's range, ends included")
    }

    func testCodableRoundTripAndDefaultsForMissingKeys() throws {
        let p = SamplingParameters(temperature: 0.3, topK: 5, seed: 77, maxTokens: 9, stop: ["\n\n"])
        let data = try JSONEncoder().encode(p)
        XCTAssertEqual(try JSONDecoder().decode(SamplingParameters.self, from: data), p)
        let partial = try JSONDecoder().decode(SamplingParameters.self, from: Data(#"{"seed": 5, "topP": 0.5}"#.utf8))
        var expected = SamplingParameters()
        expected.seed = 5
        expected.topP = 0.5
        XCTAssertEqual(partial, expected)
    }
}
