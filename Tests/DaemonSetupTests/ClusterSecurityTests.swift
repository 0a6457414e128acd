import CaravanTransport
import DaemonSetup
import Foundation
import XCTest
import ZeroMQ

final class ClusterSecurityTests: XCTestCase {
    func testKeyFileIsCreatedOnceThenReused() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try ClusterSecurity.keyPair(file: path)
        let again = try ClusterSecurity.keyPair(file: path)
        XCTAssertEqual(first, again)
        XCTAssertEqual(first.publicKey.count, 40)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        XCTAssertEqual(mode?.intValue, 0o600)
        XCTAssertEqual(ClusterSecurity.curve(first).publicKey, first.publicKey)
        XCTAssertEqual(ClusterSecurity.plain.publicKey, "")
        try "not a key".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ClusterSecurity.keyPair(file: path))
    }
}
