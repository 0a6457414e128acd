import Foundation
import Worker
import XCTest

final class LayerCachePruningTests: XCTestCase {
    private func sha(_ c: Character) -> String { String(repeating: c, count: 64) }

    private func age(_ path: String, days: Double) throws {
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-days * 86_400)], ofItemAtPath: path)
    }

    func testOnlyStaleUnlockedCachesOfOtherModelsAreRemoved() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prune-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Four caches made the way a worker makes them.
        for c: Character in ["a", "b", "c", "d"] {
            let cache = try LayerCache(directory: dir, sha256: sha(c), size: 2_000, blockSize: 1_000)
            try [UInt8](repeating: 7, count: 1_000).withUnsafeBytes { try cache.write(block: 0, bytes: $0) }
            try cache.commit()
        }
        for c: Character in ["a", "b", "c"] {
            try age(dir + "/" + sha(c) + ".gguf", days: 30)
            try age(dir + "/" + sha(c) + ".blocks.json", days: 30)
        }
        // "c" is old but open (locked) by a worker right now; "d" is recent; "a" is the model in use.
        let busy = try LayerCache(directory: dir, sha256: sha("c"), size: 2_000, blockSize: 1_000)
        try age(dir + "/" + sha("c") + ".gguf", days: 30)
        FileManager.default.createFile(atPath: dir + "/notes.txt", contents: Data("keep me".utf8))

        let removed = LayerCache.prune(directory: dir, keeping: sha("a"), unusedFor: 14 * 86_400)
        XCTAssertEqual(removed, [sha("b")])
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: dir))
        XCTAssertFalse(left.contains(sha("b") + ".gguf") || left.contains(sha("b") + ".blocks.json"), "\(left)")
        for c: Character in ["a", "c", "d"] { XCTAssertTrue(left.contains(sha(c) + ".gguf"), "\(c) kept: \(left)") }
        XCTAssertTrue(left.contains("notes.txt"), "files that are not caches are left alone")
        XCTAssertEqual(busy.recordedBlocks, 1, "the open cache still has its block")

        XCTAssertEqual(LayerCache.prune(directory: dir + "/missing", keeping: sha("a"), unusedFor: 0), [], "no directory: nothing")
    }

    /// A worker serving from its cache (its stage's layers and standby copies) marks it used: a
    /// worker of another model sharing the directory does not remove it, however old its blocks.
    func testACacheMarkedUsedByAServingWorkerIsKept() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prune-used-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for c: Character in ["e", "f"] {
            let cache = try LayerCache(directory: dir, sha256: sha(c), size: 2_000, blockSize: 1_000)
            try [UInt8](repeating: 7, count: 1_000).withUnsafeBytes { try cache.write(block: 0, bytes: $0) }
            try cache.commit()
            try age(dir + "/" + sha(c) + ".gguf", days: 30)
            try age(dir + "/" + sha(c) + ".blocks.json", days: 30)
        }
        XCTAssertTrue(LayerCache.markUsed(directory: dir, sha256: sha("e")))
        XCTAssertFalse(LayerCache.markUsed(directory: dir, sha256: sha("9")), "no such cache")
        XCTAssertEqual(LayerCache.prune(directory: dir, keeping: sha("0"), unusedFor: 14 * 86_400), [sha("f")])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + sha("e") + ".gguf"))
    }
}
