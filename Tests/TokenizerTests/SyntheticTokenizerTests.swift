import Tokenizer
import XCTest

/// Hand-built vocabularies with hand-computed expectations (no model files).
final class SyntheticTokenizerTests: XCTestCase {
    /// Byte-level BPE over "a", "b", "c", " " with merges a+b then ab+c.
    private func tinyBPE(pre: String = "gpt-2") throws -> Tokenizer {
        var tokens = ["<|end|>", "a", "b", "c", "\u{0120}", "ab", "abc", "\u{0120}a", "<user>"]
        tokens.append("1")
        return try Tokenizer(model: TokenizerModel(
            kind: .bpe, preTokenizer: pre, tokens: tokens,
            tokenTypes: [.control] + Array(repeating: .normal, count: 7) + [.userDefined, .normal],
            merges: ["a b", "ab c", "\u{0120} a"], bosId: 0, eosId: 0))
    }

    func testBPEMergesByRank() throws {
        let t = try tinyBPE()
        XCTAssertEqual(t.encode("abc", addSpecial: false), [6])
        XCTAssertEqual(t.encode("cab", addSpecial: false), [3, 5])
        // " abc": a+b (rank 0) beats Ġ+a (rank 2), then ab+c; Ġ stays alone
        XCTAssertEqual(t.encode("abc abc", addSpecial: false), [6, 4, 6])
        XCTAssertEqual(t.encode(" ac", addSpecial: false), [7, 3])
        XCTAssertEqual(t.decode([6, 4, 6]), "abc abc")
    }

    func testBPEUnknownBytesAreDropped() throws {
        // llama.cpp drops bytes with no token at all; "d" is not in this vocabulary
        XCTAssertEqual(try tinyBPE().encode("adb", addSpecial: false), [1, 2])
    }

    func testSpecialTokenMatching() throws {
        let t = try tinyBPE()
        XCTAssertEqual(t.encode("a<|end|>b", addSpecial: false), [1, 0, 2])
        // parseSpecial off: the control token is plain text (no '<' or '|' tokens here, so those bytes vanish)
        XCTAssertEqual(t.encode("a<|end|>b", addSpecial: false, parseSpecial: false), [1, 2])
        // user-defined tokens are matched even with parseSpecial off, as in llama.cpp
        XCTAssertEqual(t.encode("a<user>b", addSpecial: false, parseSpecial: false), [1, 8, 2])
        XCTAssertTrue(t.isEndOfGeneration(0))
        XCTAssertTrue(t.isControl(0))
        XCTAssertFalse(t.isControl(8))
    }

    func testHarmonyEndIsNotEndOfGeneration() throws {
        let tokens = ["a", "<|end|>", "<|return|>", "<|call|>", "<|channel|>", "<|im_end|>"]
        let t = try Tokenizer(model: TokenizerModel(
            kind: .bpe, preTokenizer: "gpt2", tokens: tokens,
            tokenTypes: [.normal] + Array(repeating: .control, count: 5), merges: []))
        XCTAssertEqual(t.endOfGenerationTokens, [2, 3, 5])
        XCTAssertFalse(t.isControl(1))  // became user-defined
        XCTAssertFalse(t.isControl(4))
        XCTAssertEqual(t.encode("<|end|>a", addSpecial: false, parseSpecial: false), [1, 0])
    }

    func testUnknownPreTokenizerIsRejected() {
        XCTAssertThrowsError(try tinyBPE(pre: "no-such-pre")) { error in
            XCTAssertEqual(error as? TokenizerError, .unsupportedPreTokenizer("no-such-pre"))
        }
    }

    func testAddBosWithoutBosIsRejected() {
        XCTAssertThrowsError(try Tokenizer(model: TokenizerModel(kind: .sentencePiece, tokens: ["a"]))) { error in
            XCTAssertEqual(error as? TokenizerError, .invalidSpecialToken(name: "bos", id: nil))
        }
    }

    /// SentencePiece: highest score wins, spaces become U+2581 with a prefix space, byte fallback.
    func testSentencePieceScoresAndByteFallback() throws {
        var tokens = ["<unk>", "<s>", "</s>", "\u{2581}", "h", "i", "\u{2581}h", "hi", "\u{2581}hi"]
        var types: [TokenizerModel.TokenType] = [.unknown, .control, .control] + Array(repeating: .normal, count: 6)
        var scores: [Float] = [0, 0, 0, -1, -1, -1, -5, -2, -3]
        for b in 0..<256 {
            tokens.append(String(format: "<0x%02X>", b)); types.append(.byte); scores.append(0)
        }
        let t = try Tokenizer(model: TokenizerModel(kind: .sentencePiece, tokens: tokens, tokenTypes: types,
                                                    scores: scores, bosId: 1, eosId: 2, unkId: 0))
        // "▁hi": pairs ▁h (-5) and hi (-2): hi first, then ▁+hi = ▁hi (-3)
        XCTAssertEqual(t.encode("hi"), [1, 8])
        // "é" is not a token: its two UTF-8 bytes become <0xC3> <0xA9>
        XCTAssertEqual(t.encode("hé", addSpecial: false), [6, 9 + 0xC3, 9 + 0xA9])
        XCTAssertEqual(t.decode([1, 8, 3, 4]), "<s>hi h")
        XCTAssertEqual(t.decode([1, 8, 3, 4], skipSpecial: true), "hi h")
        XCTAssertEqual(t.piece(9 + 0x41), [0x41])
        XCTAssertEqual(t.encode("</s>hi", addSpecial: false), [2, 8])  // space prefix again after a special token
    }
}
