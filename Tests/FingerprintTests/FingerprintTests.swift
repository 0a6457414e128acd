import Fingerprint
import Foundation
import XCTest

/// SHA-256 known answers and a model file's fingerprint (cached next to the file).
final class FingerprintTests: XCTestCase {
    func testSHA256KnownAnswers() {
        XCTAssertEqual(SHA256.hex(of: []), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(of: Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Incremental updates in odd pieces equal one update.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var h = SHA256()
        var i = 0
        for size in [1, 63, 64, 65, 7, 300, 500] {
            h.update(Array(data[i..<min(data.count, i + size)]))
            i = min(data.count, i + size)
        }
        XCTAssertEqual(SHA256.hexString(h.finalize()), SHA256.hex(of: data))
    }

    func testFingerprintIsCachedNextToTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fp-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.gguf").path
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        let fp = try ModelFingerprint.of(path: path)
        XCTAssertEqual(fp, ModelFingerprint(name: "m.gguf", sha256: SHA256.hex(of: Array("abc".utf8)), size: 3))
        let cache = try String(contentsOfFile: path + ".sha256", encoding: .utf8)
        XCTAssertTrue(cache.hasPrefix(fp.sha256))
        // A stale cache (different size) is recomputed.
        try Data("abcd".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try ModelFingerprint.of(path: path).sha256, SHA256.hex(of: Array("abcd".utf8)))
        XCTAssertThrowsError(try ModelFingerprint.of(path: dir.appendingPathComponent("missing").path))
    }
}
