import Foundation
import Worker
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The layer cache writes blocks around the page cache (`O_DIRECT`) where the file system allows
/// it: written through it, each block took fresh page-cache pages, and on a VM whose freed memory
/// goes back to the host every such page cost a host fault on first touch.
final class LayerCacheDirectWriteTests: XCTestCase {
    func testBlocksFromAnyAddressAreWrittenAroundThePageCache() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("layer-cache-direct-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sha = String(repeating: "d", count: 64)
        let block = 64 << 10
        let size = 3 * block + 1_000  // the short last block goes through the page cache
        func pattern(_ count: Int, seed: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) } }
        // One byte past an aligned address, as a received chunk's bytes may sit anywhere: the cache
        // must align them itself (O_DIRECT refuses unaligned memory).
        let middle = [UInt8](repeating: 0, count: 1) + pattern(block, seed: 1)
        let last = pattern(1_000, seed: 3)
        do {
            let cache = try LayerCache(directory: dir, sha256: sha, size: UInt64(size), blockSize: UInt64(block))
            try XCTSkipUnless(cache.writesDirectly, "the file system of \(dir) does not take O_DIRECT")
            try middle.withUnsafeBytes { raw in
                try cache.write(block: 1, bytes: UnsafeRawBufferPointer(rebasing: raw[1...]))
            }
            try last.withUnsafeBytes { try cache.write(block: 3, bytes: $0) }
            try cache.commit()
            XCTAssertTrue(cache.writesDirectly, "the direct writes were not refused")
        }

        let path = dir + "/" + sha + ".gguf"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        if try fileSystemType(of: dir) != "tmpfs" {  // a tmpfs file is its page cache
            // Block 1's pages never entered the page cache: no fresh pages were taken for it.
            let mapped = try XCTUnwrap(mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0))
            XCTAssertNotEqual(mapped, MAP_FAILED)
            defer { munmap(mapped, size) }
            var resident = [UInt8](repeating: 1, count: block / Int(sysconf(Int32(_SC_PAGESIZE))))
            XCTAssertEqual(mincore(mapped + block, block, &resident), 0)
            XCTAssertEqual(resident.filter { $0 & 1 != 0 }.count, 0, "pages of a directly written block in the page cache")
        }
        func read(_ offset: Int, _ count: Int) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return n == count ? out : []
        }
        XCTAssertEqual(read(block, block), Array(middle.dropFirst()))
        XCTAssertEqual(read(3 * block, 1_000), last)
        XCTAssertEqual(read(0, 16), [UInt8](repeating: 0, count: 16), "block 0 stays a hole")

        let again = try LayerCache(directory: dir, sha256: sha, size: UInt64(size), blockSize: UInt64(block))
        XCTAssertEqual(again.check([0, 1, 2, 3]).cached, [1, 3])
    }

    /// Standby copies go through the page cache: a recovery loads them, and must find them there.
    func testStandbyCopiesAreWrittenThroughThePageCache() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("layer-cache-buffered-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sha = String(repeating: "e", count: 64)
        let block = 64 << 10
        let cache = try LayerCache(directory: dir, sha256: sha, size: UInt64(2 * block), blockSize: UInt64(block))
        cache.prefersDirectWrites = false
        XCTAssertFalse(cache.writesDirectly)
        let bytes = (0..<block).map { UInt8(truncatingIfNeeded: $0 &* 5) }
        try bytes.withUnsafeBytes { try cache.write(block: 1, bytes: $0) }
        try cache.commit()
        let fd = open(dir + "/" + sha + ".gguf", O_RDONLY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let mapped = try XCTUnwrap(mmap(nil, 2 * block, PROT_READ, MAP_SHARED, fd, 0))
        XCTAssertNotEqual(mapped, MAP_FAILED)
        defer { munmap(mapped, 2 * block) }
        var resident = [UInt8](repeating: 0, count: block / Int(sysconf(Int32(_SC_PAGESIZE))))
        XCTAssertEqual(mincore(mapped + block, block, &resident), 0)
        XCTAssertEqual(resident.filter { $0 & 1 != 0 }.count, resident.count, "the block's pages are in the page cache")
    }

    /// The type of the file system `path` is on: that of the longest mount point above it.
    private func fileSystemType(of path: String) throws -> String {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        var best = (point: "", type: "")
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 2 else { continue }
            let point = String(fields[1])
            let under = point == "/" || resolved == point || resolved.hasPrefix(point + "/")
            if under, point.count >= best.point.count { best = (point, String(fields[2])) }
        }
        return best.type
    }
}
