import XCTest
@testable import OpenAICLI

/// `caravan-openai`'s flags: the listen address and what is refused before the server starts.
final class CaravanOpenAITests: XCTestCase {
    func testListenAddresses() throws {
        XCTAssertTrue(try CaravanOpenAI.hostPort("127.0.0.1:8080") == ("127.0.0.1", 8080))
        XCTAssertTrue(try CaravanOpenAI.hostPort("[::1]:0") == ("::1", 0))
        XCTAssertTrue(try CaravanOpenAI.hostPort(":9000") == ("127.0.0.1", 9000))
        XCTAssertThrowsError(try CaravanOpenAI.hostPort("localhost"))
        XCTAssertThrowsError(try CaravanOpenAI.hostPort("h:65536"))
    }

    func testBadFlagsAreRefused() throws {
        let base = ["--coordinator", "tcp://h:1", "--insecure"]
        XCTAssertNoThrow(try CaravanOpenAI.parse(base))
        for bad in [["--listen", "nowhere"], ["--timeout", "0"], ["--max-body-bytes", "10"], ["--metrics", "x"],
                    ["--max-concurrent-requests", "0"]] {
            XCTAssertThrowsError(try CaravanOpenAI.parse(base + bad), "\(bad)")
        }
        XCTAssertThrowsError(try CaravanOpenAI.parse(["--coordinator", "tcp://h:1", "--coordinator-key", "short"]))
    }
}
