import Tokenizer
import XCTest

final class StreamingDetokenizerTests: XCTestCase {
    /// Streams `ids` one by one; returns the chunks.
    private func stream(_ t: Tokenizer, _ ids: [Int32], skipSpecial: Bool = false) -> [String] {
        var d = StreamingDetokenizer(tokenizer: t, skipSpecial: skipSpecial)
        var chunks = ids.map { d.append($0) }
        chunks.append(d.flush())
        return chunks
    }

    func testEmojiAndCJKSplitAcrossTokensAreHeldBack() throws {
        let t = try SharedTokenizers.smollm2.get()
        let text = "Hi 👋🌍! 你好，世界 🎉 Привет"
        let ids = t.encode(text, addSpecial: false)
        // The vocabulary really splits some characters over several tokens.
        let partial = ids.filter { String(validating: t.piece($0), as: UTF8.self) == nil }
        XCTAssertFalse(partial.isEmpty, "expected byte-level pieces that are not valid UTF-8 on their own")
        let chunks = stream(t, ids)
        XCTAssertEqual(chunks.joined(), text)
        XCTAssertTrue(chunks.allSatisfy { !$0.contains("\u{FFFD}") }, "\(chunks)")
        XCTAssertTrue(chunks.dropLast().contains(""), "some append must hold bytes back")
        XCTAssertEqual(chunks.last, "")
    }

    func testByteFallbackInSentencePiece() throws {
        let t = try SharedTokenizers.llamaSPM.get()
        let text = "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🦙"
        let ids = t.encode(text, addSpecial: false)
        XCTAssertTrue(ids.contains { t.piece($0).count == 1 && t.piece($0)[0] >= 0x80 }, "expected <0xXX> tokens")
        let chunks = stream(t, ids)
        XCTAssertEqual(chunks.joined(), " " + text)  // SentencePiece's prefix space is part of the stream
        XCTAssertTrue(chunks.allSatisfy { !$0.contains("\u{FFFD}") })
    }

    func testFlushEmitsIncompleteTailAsReplacement() throws {
        let t = try SharedTokenizers.smollm2.get()
        let ids = t.encode("👋", addSpecial: false)
        XCTAssertGreaterThan(ids.count, 1)
        var d = StreamingDetokenizer(tokenizer: t)
        XCTAssertEqual(d.append(ids[0]), "")
        XCTAssertEqual(d.flush(), "\u{FFFD}")
        XCTAssertEqual(d.flush(), "")
    }

    func testSkipSpecial() throws {
        let t = try SharedTokenizers.smollm2.get()
        let ids = t.encode("<|im_start|>assistant\nOK<|im_end|>", addSpecial: false)
        XCTAssertEqual(stream(t, ids, skipSpecial: true).joined(), "assistant\nOK")
        XCTAssertEqual(stream(t, ids).joined(), "<|im_start|>assistant\nOK<|im_end|>")
    }
}
