import CaravanCore
import Foundation
import GGUF
import TestSupport
@testable import Worker
import XCTest

/// A worker's layer cache kept within its standby budget: copies left by earlier plans are
/// released (holes punched, the disk space freed) beyond what the budget leaves, farthest from
/// the layers kept first; the stage it runs, its standby copies and the header always stay.
final class LayerCacheTrimmingTests: XCTestCase {
    private func directory(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    }

    func testTheFarthestLeftoversGoFirstUntilTheRestFitsTheAllowance() {
        let held = Set(0..<10)
        let release = LayerCache.blocksToRelease(held: held, keep: [0, 1, 2], allowance: 300, bytes: { _ in 100 })
        XCTAssertEqual(release, [9, 8, 7, 6], "7 leftovers of 100 bytes, 300 allowed: the 4 farthest go")
        XCTAssertEqual(LayerCache.blocksToRelease(held: held, keep: [0, 1, 2], allowance: 700, bytes: { _ in 100 }), [],
                       "within the allowance nothing goes")
        XCTAssertEqual(LayerCache.blocksToRelease(held: [1, 4, 5, 9], keep: [5], allowance: 0, bytes: { _ in 1 }), [9, 1, 4],
                       "farthest first, the higher index among equals (9 and 1 are 4 away, 4 is 1 away)")
    }

    func testReleasedBlocksLeaveTheManifestAndTheDisk() throws {
        let dir = directory("release")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sha = String(repeating: "c", count: 64), block = 1 << 20
        do {
            let cache = try LayerCache(directory: dir, sha256: sha, size: UInt64(4 * block), blockSize: UInt64(block))
            for b in 0..<4 {
                try [UInt8](repeating: UInt8(b + 1), count: block).withUnsafeBytes { try cache.write(block: b, bytes: $0) }
            }
            try cache.commit()
            let before = try allocatedBytes(cache.path)
            XCTAssertEqual(cache.release([1, 2, 7]), UInt64(2 * block), "block 7 was never held")
            try cache.commit()
            XCTAssertLessThanOrEqual(try allocatedBytes(cache.path), before - UInt64(2 * block), "the holes free the disk")
        }
        let reopened = try LayerCache(directory: dir, sha256: sha, size: UInt64(4 * block), blockSize: UInt64(block))
        XCTAssertEqual(reopened.heldBlocks, [0, 3])
        XCTAssertEqual(reopened.check([0, 3]).cached, [0, 3], "the blocks kept still check")
    }

    /// The real model fully cached (earlier plans pulled all of it); the worker now runs layers
    /// [0, 10) and keeps a standby copy of [10, 15), with a budget of exactly that copy: every
    /// other layer is released, and what the cache reports is the stage and the copy.
    func testTrimKeepsTheStageAndTheCopiesWithinTheBudget() throws {
        let path = try TestModel.requirePath()
        let file = try GGUFFile(path: path)
        let dir = directory("trim")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try Data(contentsOf: URL(fileURLWithPath: path))
        let sha = String(repeating: "b", count: 64), blockSize: UInt64 = 1 << 20
        let size = UInt64(model.count)
        do {
            let cache = try LayerCache(directory: dir, sha256: sha, size: size, blockSize: blockSize)
            let blocks = Int((size + blockSize - 1) / blockSize)
            try model.withUnsafeBytes { raw in
                for b in 0..<blocks {
                    let r = StageByteRanges.blockBytes(b, blockSize: blockSize, fileSize: size)
                    try cache.write(block: b, bytes: UnsafeRawBufferPointer(rebasing: raw[Int(r.lowerBound)..<Int(r.upperBound)]))
                }
            }
            try cache.commit()
        }
        XCTAssertEqual(LayerCache.contents(directory: dir).first?.layers, Array(0..<30))
        let copy = StageByteRanges.blocks(covering: StageByteRanges.ranges(file: file, layers: LayerRange(10, 15)!, layerCount: 30),
                                          blockSize: blockSize, fileSize: size)
        let header = StageByteRanges.blocks(covering: [0..<UInt64(file.dataOffset)], blockSize: blockSize, fileSize: size)
        let copyBytes = copy.filter { !header.contains($0) }.reduce(UInt64(0)) {
            $0 + UInt64(StageByteRanges.blockBytes($1, blockSize: blockSize, fileSize: size).count)
        }

        // Another worker holding the cache: nothing is touched, the caller tries later.
        do {
            let busy = try LayerCache(directory: dir, sha256: sha, size: size, blockSize: blockSize)
            XCTAssertNil(LayerCache.trim(directory: dir, sha256: sha, own: LayerRange(0, 10), standby: [LayerRange(10, 15)!],
                                         layerCount: 30, budget: copyBytes))
            XCTAssertEqual(busy.heldBlocks.count, Int((size + blockSize - 1) / blockSize))
        }
        let released = try XCTUnwrap(LayerCache.trim(directory: dir, sha256: sha, own: LayerRange(0, 10), standby: [LayerRange(10, 15)!],
                                                     layerCount: 30, budget: copyBytes))
        XCTAssertGreaterThan(released, size / 4, "half the layers (the embedding stays with the first stage)")
        XCTAssertEqual(LayerCache.contents(directory: dir).first?.layers, Array(0..<15))
        XCTAssertEqual(LayerCache.trim(directory: dir, sha256: sha, own: LayerRange(0, 10), standby: [LayerRange(10, 15)!],
                                       layerCount: 30, budget: copyBytes), 0, "within the budget now")
        XCTAssertEqual(LayerCache.trim(directory: dir, sha256: String(repeating: "9", count: 64), own: nil, standby: [],
                                       layerCount: 30, budget: 0), 0, "no such cache")
    }

    private func allocatedBytes(_ path: String) throws -> UInt64 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw XCTSkip("cannot stat \(path)") }
        return UInt64(st.st_blocks) * 512
    }
}
