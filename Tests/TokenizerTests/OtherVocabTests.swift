import Tokenizer
import XCTest

/// Vocabularies from llama.cpp's models/ directory (extracted by Scripts/setup).
final class OtherVocabTests: XCTestCase {
    func testLlamaSentencePieceMatchesFixtures() throws {
        let t = try SharedTokenizers.llamaSPM.get()
        XCTAssertEqual(t.model.kind, .sentencePiece)
        checkFixture(t, try TokenizerFixture.load("llama-spm"))
    }

    func testLlama3BPEMatchesFixtures() throws {
        let t = try SharedTokenizers.llamaBPE.get()
        XCTAssertEqual(t.model.preTokenizer, "llama-bpe")
        checkFixture(t, try TokenizerFixture.load("llama-bpe"))
    }

    func testGPT2MatchesFixtures() throws {
        checkFixture(try SharedTokenizers.gpt2.get(), try TokenizerFixture.load("gpt-2"))
    }

    func testQwen2MatchesFixtures() throws {
        let t = try SharedTokenizers.qwen2.get()
        XCTAssertEqual(t.model.preTokenizer, "qwen2")
        checkFixture(t, try TokenizerFixture.load("qwen2"))
        XCTAssertTrue(t.isEndOfGeneration(try XCTUnwrap(t.token(for: "<|im_end|>"))))
    }

    func testDefaultPreTokenizerMatchesFixtures() throws {
        checkFixture(try SharedTokenizers.gpt2(pre: "default"), try TokenizerFixture.load("gpt-2-pre-default"))
    }

    func testSmolLMPreTokenizerOnGPT2VocabMatchesFixtures() throws {
        checkFixture(try SharedTokenizers.gpt2(pre: "smollm"), try TokenizerFixture.load("gpt-2-pre-smollm"))
    }

    func testLlama3PreTokenizerOnGPT2VocabMatchesFixtures() throws {
        checkFixture(try SharedTokenizers.gpt2(pre: "llama-bpe"), try TokenizerFixture.load("gpt-2-pre-llama-bpe"))
    }

    func testSentencePieceDecodeDropsPrefixSpace() throws {
        let t = try SharedTokenizers.llamaSPM.get()
        let ids = t.encode("Hello world", addSpecial: true)
        XCTAssertEqual(ids.first, 1)
        XCTAssertEqual(t.decode(ids, skipSpecial: true), "Hello world")
        XCTAssertEqual(t.decode(Array(ids.dropFirst())), "Hello world")
    }

    func testLlama3RoundTripAndEOG() throws {
        let t = try SharedTokenizers.llamaBPE.get()
        let fixture = try TokenizerFixture.load("llama-bpe")
        for c in fixture.cases where !c.addSpecial {
            XCTAssertEqual(t.decode(c.ids), c.text)
        }
        let eot = try XCTUnwrap(t.token(for: "<|eot_id|>"))
        XCTAssertTrue(t.isEndOfGeneration(eot))
    }
}
