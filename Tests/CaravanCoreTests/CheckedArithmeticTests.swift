import CaravanCore
import XCTest

/// Overflow-checked sizes: nil where plain arithmetic would trap.
final class CheckedArithmeticTests: XCTestCase {
    func testProductsSumsAndConversions() {
        XCTAssertEqual(CheckedArithmetic.product(3, 5, 7), 105)
        XCTAssertNil(CheckedArithmetic.product(UInt64(UInt32.max), UInt64(UInt32.max), 2))
        XCTAssertEqual(CheckedArithmetic.sum(UInt64.max - 1, 1), .max)
        XCTAssertNil(CheckedArithmetic.sum(UInt64.max, 1))
        XCTAssertNil(CheckedArithmetic.unsigned(-1))
        XCTAssertEqual(CheckedArithmetic.int(2.9), 2)
        XCTAssertNil(CheckedArithmetic.int(.nan))
        XCTAssertNil(CheckedArithmetic.int(.infinity))
        XCTAssertNil(CheckedArithmetic.int(1e300))
    }

    func testEmptyAndBoundaryCases() {
        XCTAssertEqual(CheckedArithmetic.product([UInt64]()), 1)
        XCTAssertEqual(CheckedArithmetic.sum([UInt64]()), 0)
        XCTAssertEqual(CheckedArithmetic.product(UInt64(1) << 32, UInt64(1) << 31), 1 << 63)
        XCTAssertNil(CheckedArithmetic.product(UInt64(1) << 32, UInt64(1) << 32))
        XCTAssertEqual(CheckedArithmetic.product(0, .max, .max), 0)
        XCTAssertEqual(CheckedArithmetic.unsigned(Int.max), UInt64(Int.max))
        XCTAssertEqual(CheckedArithmetic.int(-2.5), -3, "rounded down, not toward zero")
    }
}
