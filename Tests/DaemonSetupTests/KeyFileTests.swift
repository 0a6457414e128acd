import CaravanTransport
import DaemonSetup
import Foundation
import XCTest
import ZeroMQ

/// Secret key files: created private with `O_EXCL` (never wider, never through a symlink), and a
/// secret key that group or others can read is refused with a clear error.
final class KeyFileTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func mode(_ path: String) throws -> Int {
        try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber).intValue
    }

    /// With a permissive umask the file is still created 0600 (the mode is given to `open`, not
    /// applied afterwards), and it refuses to replace anything.
    func testCreateIsPrivateFromTheStartAndExclusive() throws {
        let path = directory.appendingPathComponent("k").path
        let old = umask(0)
        defer { umask(old) }
        try KeyFile.create(path, contents: "secret\n")
        XCTAssertEqual(try mode(path), 0o600)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "secret\n")
        XCTAssertThrowsError(try KeyFile.create(path, contents: "other")) { error in
            XCTAssertEqual((error as? KeyFile.Failure)?.exists, true)
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "secret\n", "not overwritten")
        // A symlink planted where the key goes (even a dangling one) is not followed.
        let target = directory.appendingPathComponent("target").path
        let link = directory.appendingPathComponent("link").path
        XCTAssertEqual(symlink(target, link), 0)
        XCTAssertThrowsError(try KeyFile.create(link, contents: "secret"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: target), "wrote through a symlink")
    }

    /// A daemon's key file is created 0600 even under umask 0, and read back.
    func testAGeneratedKeyFileIsPrivateAndReused() throws {
        let path = directory.appendingPathComponent("daemon.key").path
        let old = umask(0)
        defer { umask(old) }
        let keys = try ClusterSecurity.keyPair(file: path)
        XCTAssertEqual(try mode(path), 0o600)
        XCTAssertEqual(try ClusterSecurity.keyPair(file: path), keys)
    }

    /// A secret key readable (or writable) by group or others is refused, naming the file, the
    /// mode and the fix; made private again, it is accepted.
    func testASecretKeyOthersCanReadIsRefused() throws {
        let path = directory.appendingPathComponent("open.key").path
        let keys = try CurveKeyPair.generate()
        try (keys.secretKey + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        for loose in [0o644, 0o640, 0o604, 0o620] {
            try FileManager.default.setAttributes([.posixPermissions: loose], ofItemAtPath: path)
            XCTAssertThrowsError(try ClusterSecurity.keyPair(file: path)) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(path) && text.contains("group or others") && text.contains("chmod 600"), text)
                XCTAssertTrue(text.contains(String(loose, radix: 8)), text)
            }
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        XCTAssertEqual(try ClusterSecurity.keyPair(file: path), keys)
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: path)
        XCTAssertEqual(try ClusterSecurity.keyPair(file: path), keys)
    }
}
