import Foundation
import Logging
import Prometheus
import XCTest
@testable import MetricsEndpoint
#if canImport(Glibc)
import Glibc
#endif

/// A metrics endpoint that cannot bind says which address and which flag, instead of a bare
/// system-call error that leaves the operator guessing which of a daemon's ports is taken.
final class MetricsServerStartTests: XCTestCase {
    /// A TCP socket listening on 127.0.0.1 at a free port; returns (descriptor, port).
    private func occupiedPort() throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw XCTSkip("no socket") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && listen(fd, 1) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { close(fd); throw XCTSkip("cannot bind a loopback port") }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    func testAPortInUseIsAnErrorNamingTheFlagAndAddress() async throws {
        let (fd, port) = try occupiedPort()
        defer { close(fd) }
        let address = try XCTUnwrap(HostPort("127.0.0.1:\(port)"))
        let server = MetricsServer(address: address, registry: PrometheusCollectorRegistry(),
                                   logger: Logger(label: "test"), flag: "--metrics")
        do {
            try await server.run()
            XCTFail("a second listener on an occupied port started")
        } catch let error as MetricsServerError {
            XCTAssertEqual(error.address, address)
            let text = "\(error)"
            XCTAssertTrue(text.contains("--metrics"), text)
            XCTAssertTrue(text.contains("127.0.0.1:\(port)"), text)
            XCTAssertTrue(text.lowercased().contains("in use"), text)
        }
    }
}
