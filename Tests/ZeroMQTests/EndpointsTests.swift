import XCTest
import ZeroMQ

final class EndpointsTests: XCTestCase {
    func testEndpoints() {
        XCTAssertEqual(Endpoints.advertisable("tcp://0.0.0.0:7001"), "tcp://127.0.0.1:7001")
        XCTAssertEqual(Endpoints.advertisable("tcp://10.1.2.3:7001"), "tcp://10.1.2.3:7001")
        XCTAssertEqual(Endpoints.anyPort(like: "tcp://10.1.2.3:7000"), "tcp://10.1.2.3:*")
    }
}
