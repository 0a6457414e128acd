import CaravanCore
import XCTest

/// ``JobID``'s checked parser: the coordinator's ids and nothing else.
final class JobIDTests: XCTestCase {
    func testParsesTheCoordinatorsIDs() throws {
        for _ in 0..<100 {
            let id = JobID.random()
            XCTAssertEqual(id.rawValue.count, 4 + 32)
            XCTAssertEqual(JobID(id.rawValue), id, "a random id reads back")
            XCTAssertTrue(id.rawValue.dropFirst(4).allSatisfy { $0.isHexDigit && !$0.isUppercase })
        }
        XCTAssertNotEqual(JobID.random(), JobID.random())
        XCTAssertEqual(JobID("job-1")?.description, "job-1")
        XCTAssertEqual(JobID("job-" + String(repeating: "a", count: 64))?.rawValue.count, 68)
    }

    func testRefusesHostileStrings() {
        let hostile = [
            "", "job", "job-", "job--", "JOB-1", "jobs-1", " job-1", "job-1 ", "job-1\n", "job-\t1", "job-1-2",
            "job-../../etc/passwd", "job-1/2", "job-1\u{0}", "job-\u{0}", "job-é", "job-١٢٣", "job-ａｂｃ",
            "job-1\u{200B}", "\u{FEFF}job-1", "job-" + String(repeating: "a", count: 65),
            "job-" + String(repeating: "9", count: 100_000), "job-%00", "job-1;rm", "-job-1", "1-job",
        ]
        for text in hostile {
            XCTAssertNil(JobID(text), "refused: \(text.debugDescription.prefix(80))")
        }
    }

    func testRandomUsesItsGenerator() {
        struct Counter: RandomNumberGenerator {
            var n: UInt64 = 0
            mutating func next() -> UInt64 { n += 1; return n }
        }
        var g = Counter()
        XCTAssertEqual(JobID.random(using: &g).rawValue, "job-00000000000000010000000000000002")
    }
}
