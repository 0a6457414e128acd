import DaemonSetup
import Foundation
import XCTest

/// The join token `caravanctl invite` prints and `caravan-worker --join` reads.
final class JoinTokenTests: XCTestCase {
    let key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"

    func testRoundTripKeepsEveryField() throws {
        let token = try JoinToken(control: "tcp://10.0.0.1:7000", clients: "tcp://10.0.0.1:7100", coordinatorKey: key)
        XCTAssertTrue(token.text.hasPrefix("caravan1:"))
        XCTAssertFalse(token.text.contains { "=+/ \n".contains($0) }, "base64url without padding, one line: \(token.text)")
        XCTAssertEqual(try JoinToken(parsing: "  " + token.text + "\n"), token)
        XCTAssertFalse(token.insecure)
        let plain = try JoinToken(control: "tcp://[fe80::1]:7000", coordinatorKey: nil)
        XCTAssertEqual(try JoinToken(parsing: plain.text), plain)
        XCTAssertTrue(plain.insecure)
        XCTAssertNil(plain.clients)
    }

    /// A later field (e.g. a worker credential) does not break an older reader.
    func testUnknownFieldsAreIgnored() throws {
        let json = #"{"control":"tcp://host:7000","coordinator_key":"\#(key)","worker_credential":{"secret":"x"}}"#
        let text = "caravan1:" + Data(json.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let token = try JoinToken(parsing: text)
        XCTAssertEqual(token.control, "tcp://host:7000")
        XCTAssertEqual(token.coordinatorKey, key)
    }

    func testBadTokensAreRefusedWithAReason() {
        func reason(_ text: String) -> String {
            do {
                _ = try JoinToken(parsing: text)
                return "accepted"
            } catch {
                return error.description
            }
        }
        func encoded(_ json: String) -> String {
            "caravan1:" + Data(json.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        }
        XCTAssertTrue(reason("tcp://10.0.0.1:7000").contains("not a join token"))
        XCTAssertTrue(reason("caravan2:abc").contains("unsupported join token version 'caravan2'"))
        XCTAssertTrue(reason("caravan1:%%%").contains("damaged"))
        XCTAssertTrue(reason("caravan1:" + String(repeating: "A", count: 5000)).contains("longer than"))
        XCTAssertTrue(reason(encoded("[1, 2]")).contains("damaged"))
        XCTAssertTrue(reason(encoded(#"{"clients":"tcp://h:1"}"#)).contains("damaged"))
        XCTAssertTrue(reason(encoded(#"{"control":"http://h:7000"}"#)).contains("not tcp://HOST:PORT"))
        XCTAssertTrue(reason(encoded(#"{"control":"tcp://h:99999"}"#)).contains("not tcp://HOST:PORT"))
        XCTAssertTrue(reason(encoded(#"{"control":"tcp://0.0.0.0:7000"}"#)).contains("names no host"))
        XCTAssertTrue(reason(encoded(#"{"control":"tcp://*:7000"}"#)).contains("names no host"))
        XCTAssertTrue(reason(encoded(#"{"control":"tcp://h:7000","coordinator_key":"short"}"#)).contains("40-character"))
        XCTAssertEqual(reason(encoded(#"{"control":"tcp://h:7000"}"#)), "accepted")
        XCTAssertThrowsError(try JoinToken(control: "tcp://h:7000", coordinatorKey: "short"))
    }
}
