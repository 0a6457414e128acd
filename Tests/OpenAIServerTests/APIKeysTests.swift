@testable import OpenAIServer
import XCTest

/// API key files and the `Authorization` header check.
final class APIKeysTests: XCTestCase {
    func testKeysFromAFileAndTheBearerHeader() throws {
        let keys = try APIKeys(text: "# team\nsk-alice-0123456789abcdef alice\n\n  sk-bob-0123456789abcdef01\t# bob\n")
        XCTAssertEqual(keys.count, 2)
        XCTAssertTrue(keys.accepts(authorization: "Bearer sk-alice-0123456789abcdef"))
        XCTAssertTrue(keys.accepts(authorization: "bearer sk-bob-0123456789abcdef01"))
        XCTAssertFalse(keys.accepts(authorization: nil))
        XCTAssertFalse(keys.accepts(authorization: "sk-alice-0123456789abcdef"), "no scheme")
        XCTAssertFalse(keys.accepts(authorization: "Basic sk-alice-0123456789abcdef"))
        XCTAssertFalse(keys.accepts(authorization: "Bearer sk-alice-0123456789abcdeX"))
        XCTAssertFalse(keys.accepts(authorization: "Bearer sk-alice-0123456789abcde"), "a prefix of a key")
        XCTAssertFalse(keys.accepts(authorization: "Bearer "))
    }

    func testShortOrMissingKeysAreRefused() {
        XCTAssertThrowsError(try APIKeys(text: "# none\n"))
        XCTAssertThrowsError(try APIKeys(text: "short\n")) { error in
            XCTAssertTrue("\(error)".contains(":1:"), "\(error)")
        }
    }

    func testMissingAndWrongKeysAreOpenAIErrors() {
        XCTAssertEqual(OpenAIError.missingAPIKey.status, 401)
        XCTAssertEqual(OpenAIError.invalidAPIKey.code, "invalid_api_key")
        let json = String(decoding: OpenAIError.invalidAPIKey.json, as: UTF8.self)
        XCTAssertTrue(json.contains("\"code\":\"invalid_api_key\""), json)
    }
}
