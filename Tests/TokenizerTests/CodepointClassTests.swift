@testable import Tokenizer
import XCTest

final class CodepointClassTests: XCTestCase {
    func testCategories() {
        XCTAssertEqual(CodepointClass(0x41).group, .letter)
        XCTAssertEqual(CodepointClass(0x416).group, .letter)      // Ж
        XCTAssertEqual(CodepointClass(0x4F60).group, .letter)     // 你
        XCTAssertEqual(CodepointClass(0x37).group, .number)
        XCTAssertEqual(CodepointClass(0xBD).group, .number)       // ½
        XCTAssertEqual(CodepointClass(0x2C).group, .punctuation)
        XCTAssertEqual(CodepointClass(0x24).group, .symbol)
        XCTAssertEqual(CodepointClass(0x301).group, .mark)
        XCTAssertEqual(CodepointClass(0x1F600).group, .symbol)
        XCTAssertEqual(CodepointClass(0x378).group, .unassigned)
    }

    func testWhitespaceIsLlamaCppSet() {
        for cp: UInt32 in [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029,
                           0x202F, 0x205F, 0x3000] {
            XCTAssertTrue(CodepointClass(cp).isWhitespace, String(cp, radix: 16))
        }
        for cp: UInt32 in [0x1C, 0x1F, 0x200B, 0xFEFF, 0x41, 0x180E] {
            XCTAssertFalse(CodepointClass(cp).isWhitespace, String(cp, radix: 16))
        }
    }

    func testCodePointsNewerThanLlamaCppTablesAreUnassigned() {
        XCTAssertEqual(CodepointClass(0x1C89).group, .unassigned)  // Cyrillic Tje, Unicode 16.0
        XCTAssertEqual(CodepointClass(0x1C88).group, .letter)      // Unicode 9.0
    }
}
