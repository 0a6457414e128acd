import CaravanWire
import Coordinator
import XCTest

/// The model source's request checks: only the served model, only ranges inside the file, at
/// most the chunk limit.
final class ModelServerTests: XCTestCase {
    private let sha = String(repeating: "e", count: 64)

    private func request(_ offset: UInt64, _ length: UInt32, sha: String? = nil) -> Caravan_V1_ModelChunkRequest {
        var r = Caravan_V1_ModelChunkRequest()
        r.sha256 = sha ?? self.sha
        r.offset = offset
        r.length = length
        return r
    }

    private func refusal(_ r: Caravan_V1_ModelChunkRequest, size: UInt64 = 10_000) -> ChunkRequestRefusal? {
        if case .failure(let f) = ModelServer.check(r, sha256: sha, fileSize: size, maxChunkBytes: 4096) { return f }
        return nil
    }

    func testValidRangesAreServed() {
        XCTAssertEqual(try ModelServer.check(request(0, 4096), sha256: sha, fileSize: 10_000, maxChunkBytes: 4096).get(), 0..<4096)
        XCTAssertEqual(try ModelServer.check(request(9_000, 1_000), sha256: sha, fileSize: 10_000, maxChunkBytes: 4096).get(),
                       9_000..<10_000, "the last byte of the file")
    }

    func testAnotherModelIsNotFound() {
        XCTAssertEqual(refusal(request(0, 10, sha: String(repeating: "f", count: 64)))?.code, "not_found")
    }

    func testRangesOutsideTheFileOrOverTheLimitAreRefused() {
        XCTAssertEqual(refusal(request(0, 0))?.code, "invalid_request", "empty")
        XCTAssertEqual(refusal(request(0, 4097))?.code, "invalid_request", "over the chunk limit")
        XCTAssertEqual(refusal(request(9_001, 1_000))?.code, "invalid_request", "one byte past the end")
        XCTAssertEqual(refusal(request(20_000, 1))?.code, "invalid_request", "after the end")
        XCTAssertEqual(refusal(request(UInt64.max - 10, 100))?.code, "invalid_request", "offset + length overflows")
        XCTAssertTrue(refusal(request(9_001, 1_000))?.description.contains("10000-byte") ?? false)
    }
}
