import Worker
import XCTest

final class HostInfoTests: XCTestCase {
    func testMeminfoParsing() {
        let text = "MemTotal:       24684156 kB\nMemFree:        20000000 kB\nMemAvailable:   23000000 kB\nBuffers: 1 kB\n"
        let m = HostInfo.parseMeminfo(text)
        XCTAssertEqual(m?.total, 24_684_156 * 1024)
        XCTAssertEqual(m?.available, 23_000_000 * 1024)
        XCTAssertEqual(HostInfo.parseMeminfo("MemTotal: 10 kB\nMemFree: 4 kB\n")?.available, 4096)
        XCTAssertNil(HostInfo.parseMeminfo("garbage"))
    }
}
