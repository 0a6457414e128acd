import CaravanCore
import XCTest

final class LayerRangeTests: XCTestCase {
    func testOnlyNonEmptyRangesFromZeroUpExist() {
        XCTAssertNil(LayerRange(-1, 3))
        XCTAssertNil(LayerRange(4, 4))
        XCTAssertNil(LayerRange(5, 2))
        let r = LayerRange(3, 7)!
        XCTAssertEqual(r.count, 4)
        XCTAssertEqual(r.layers, 3..<7)
        XCTAssertEqual(r.description, "[3, 7)")
    }

    func testContainsIsHalfOpen() {
        let r = LayerRange(10, 12)!
        XCTAssertEqual((8...13).filter(r.contains), [10, 11])
    }

    func testCodableRoundTripAndSequenceOrder() throws {
        let r = LayerRange(0, 30)!
        XCTAssertEqual(try JSONDecoder().decode(LayerRange.self, from: JSONEncoder().encode(r)), r)
        let ids = [SequenceID(9), SequenceID(2), SequenceID(5)]
        XCTAssertEqual(ids.sorted().map(\.rawValue), [2, 5, 9])
        XCTAssertEqual(SequenceID(7).description, "seq7")
    }
}
