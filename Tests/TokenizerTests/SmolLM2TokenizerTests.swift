import Foundation
import GGUF
import TestSupport
import Tokenizer
import XCTest

final class SmolLM2TokenizerTests: XCTestCase {
    private func tokenizer() throws -> Tokenizer { try SharedTokenizers.smollm2.get() }

    func testMatchesLlamaCppFixtures() throws {
        checkFixture(try tokenizer(), try TokenizerFixture.load("smollm2"))
    }

    func testMetadata() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.vocabularySize, 49152)
        XCTAssertEqual(t.model.kind, .bpe)
        XCTAssertEqual(t.model.preTokenizer, "smollm")
        XCTAssertEqual(t.bosToken, 1)
        XCTAssertEqual(t.eosToken, 2)
        XCTAssertFalse(t.model.addBos)
        XCTAssertTrue(t.chatTemplate?.contains("<|im_start|>") ?? false)
    }

    func testDecodeRoundTripsFixtureTexts() throws {
        let t = try tokenizer()
        let fixture = try TokenizerFixture.load("smollm2")
        for c in fixture.cases where c.addSpecial == false {
            XCTAssertEqual(t.decode(t.encode(c.text, addSpecial: false, parseSpecial: c.parseSpecial)), c.text)
            XCTAssertEqual(t.decode(c.ids), c.text)
        }
    }

    func testSpecialTokenParsingOnAndOff() throws {
        let t = try tokenizer()
        let text = "<|im_start|>user\nHi<|im_end|>"
        let on = t.encode(text, addSpecial: false, parseSpecial: true)
        XCTAssertEqual(on.first, 1)
        XCTAssertEqual(on.last, 2)
        XCTAssertEqual(on.filter { $0 == 1 || $0 == 2 }.count, 2)
        let off = t.encode(text, addSpecial: false, parseSpecial: false)
        XCTAssertFalse(off.contains(1))
        XCTAssertFalse(off.contains(2))
        XCTAssertGreaterThan(off.count, on.count)
        XCTAssertEqual(t.decode(off), text)
        XCTAssertEqual(t.decode(on, skipSpecial: true), "user\nHi")
    }

    func testEndOfGeneration() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.token(for: "<|im_end|>"), 2)
        XCTAssertEqual(t.token(for: "<|im_start|>"), 1)
        XCTAssertNil(t.token(for: "<|not a token|>"))
        XCTAssertTrue(t.isEndOfGeneration(2))
        XCTAssertTrue(t.isEndOfGeneration(0))  // <|endoftext|>
        XCTAssertFalse(t.isEndOfGeneration(1))
        XCTAssertFalse(t.isEndOfGeneration(t.encode("Hello", addSpecial: false)[0]))
        XCTAssertFalse(t.isEndOfGeneration(-1))
    }

    func testLoadIsFast() throws {
        let path = try TestModel.requirePath()
        let file = try GGUFFile(path: path)
        let model = try TokenizerModel(gguf: file)
        let start = ContinuousClock.now
        _ = try Tokenizer(model: model)
        let elapsed = ContinuousClock.now - start
        XCTAssertLessThan(elapsed, .milliseconds(500), "building the SmolLM2 tokenizer took \(elapsed)")
    }

    func testLongInputIsFast() throws {
        let t = try tokenizer()
        let paragraph = "The quick brown fox jumps over the lazy dog 1234567, naïve café 你好 👋\n"
        let text = String(repeating: paragraph, count: 300) + String(repeating: "x", count: 5000)
        let start = ContinuousClock.now
        let ids = t.encode(text, addSpecial: false)
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3))
        XCTAssertEqual(t.decode(ids), text)
    }
}
