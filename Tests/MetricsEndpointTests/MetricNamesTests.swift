import MetricsEndpoint
import XCTest

/// Names and addresses of the metrics endpoint.
final class MetricNamesTests: XCTestCase {
    /// Hummingbird's metric and label names become Caravan's; anything else is made valid for the
    /// Prometheus text format (the parser in the cluster test refuses invalid names).
    func testNamesAreValidForPrometheus() {
        XCTAssertEqual(MetricNames.name("hb.requests"), "caravan_http_requests_total")
        XCTAssertEqual(MetricNames.name("http.server.request.duration"), "caravan_http_request_duration_seconds")
        XCTAssertEqual(MetricNames.label("http.response.status_code"), "status")
        XCTAssertEqual(MetricNames.name("caravan_tokens_generated_total"), "caravan_tokens_generated_total")
        XCTAssertEqual(MetricNames.name("a.b-c:d"), "a_b_c:d")
        XCTAssertEqual(MetricNames.label("a.b-c:d"), "a_b_c_d")
        XCTAssertEqual(MetricNames.name("9lives"), "_9lives")
        XCTAssertEqual(MetricNames.label(""), "_")
        XCTAssertEqual(MetricNames.name("größe"), "gr__e")
    }

    func testHostPortParsing() {
        XCTAssertEqual(HostPort("127.0.0.1:9400"), HostPort("127.0.0.1:9400"))
        XCTAssertEqual(HostPort("127.0.0.1:9400")?.port, 9400)
        XCTAssertEqual(HostPort(":0")?.host, "127.0.0.1")
        XCTAssertEqual(HostPort("[::1]:9400")?.host, "::1")
        XCTAssertEqual(HostPort("[::1]:9400")?.description, "[::1]:9400")
        XCTAssertEqual(HostPort("0.0.0.0:9400")?.description, "0.0.0.0:9400")
        XCTAssertNil(HostPort("9400"))
        XCTAssertNil(HostPort("host:65536"))
        XCTAssertNil(HostPort("host:-1"))
        XCTAssertNil(HostPort("host:port"))
    }
}
