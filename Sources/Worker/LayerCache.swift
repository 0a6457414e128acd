import CaravanCore
import CaravanWire
import Foundation
import GGUF
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why pulling layers from the coordinator (or caching them) failed.
public struct LayerFetchError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public let description: String
    /// True when another process (a worker on the same machine) holds the cache of this model.
    public var cacheBusy = false
    /// True when a standby pull would exceed its budget.
    public var overBudget = false
    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}

/// A worker's on-disk copy of the parts of a model file it pulled: `<directory>/<sha256>.gguf`, a
/// sparse file of the model's full size holding the pulled blocks at their offsets (so the normal
/// GGUF loader maps it), and `<sha256>.blocks.json`, the blocks written and verified so far with
/// the CRC-32C of each. The manifest is replaced atomically after the data is synced, so after a
/// crash it lists only blocks that are on disk; blocks are checked against their CRC again before
/// they are reused.
///
/// Blocks are written around the page cache (`O_DIRECT`, from a reused page-aligned buffer) where
/// the file system allows it: through the page cache every block needs fresh pages, and on a VM
/// whose freed memory goes back to the host (virtio-balloon free page reporting) each fresh page
/// costs a host fault on first touch, so the copy into the cache took the CPU the pull's
/// decryption needs (a whole model is more than the memory such a VM keeps unreported). The bytes
/// are still read back through the page cache when the stage loads. Durability is unchanged:
/// ``commit()`` syncs the file (the device's write cache and the file's extents) before the
/// manifest lists a block.
///
/// An open cache holds an exclusive lock (`flock`) on its file, so workers on one machine sharing
/// a cache directory take turns (the second then reuses what the first pulled). Not thread-safe:
/// one fetch uses it at a time.
public final class LayerCache {
    struct Manifest: Codable {
        var sha256: String
        var size: UInt64
        var blockSize: UInt64
        /// Block index (decimal) -> CRC-32C of its bytes.
        var blocks: [String: UInt32]

        /// The manifest at `path`, nil when there is none or it does not parse.
        static func read(_ path: String) -> Manifest? {
            FileManager.default.contents(atPath: path).flatMap { try? JSONDecoder().decode(Manifest.self, from: $0) }
        }
    }

    /// The sparse model file.
    public let path: String
    private let manifestPath: String
    private let fd: Int32
    /// The same file opened with `O_DIRECT` for writing blocks; -1 where the file system refuses
    /// it (or refused a direct write), and then blocks go through `fd` and the page cache.
    private var directFD: Int32 = -1
    /// Page-aligned memory of one block (rounded up to ``directAlignment``) that a direct write
    /// copies the block into: received chunks sit at any address, `O_DIRECT` needs aligned memory.
    /// Allocated at the first direct write and reused, so its pages stay backed.
    private var staging: UnsafeMutableRawPointer?
    private var manifest: Manifest
    private var dirty = false
    /// Blocks recorded as verified.
    public var recordedBlocks: Int { manifest.blocks.count }
    /// Whether blocks go around the page cache where the file system allows it (the default).
    /// Standby copies are written through it instead: they come slowly in the background, and a
    /// recovery that loads them must find them in memory, not on the disk.
    public var prefersDirectWrites = true
    /// True while blocks are written around the page cache (`O_DIRECT`); false where the file
    /// system does not support it or ``prefersDirectWrites`` is off (blocks then go through the
    /// page cache).
    public var writesDirectly: Bool { directFD >= 0 && prefersDirectWrites }

    /// Alignment of a direct write's memory, file offset and length: the page size covers every
    /// device's logical block size. Blocks not on it (the file's short last block, block sizes
    /// that are not a multiple of it) are written through the page cache.
    static let directAlignment = 4096

    /// `O_DIRECT`, which Glibc's Swift module hides behind `_GNU_SOURCE`; its value differs by
    /// architecture. Nil where it is not known here (blocks then go through the page cache).
    private static var directFlag: Int32? {
        #if os(Linux) && (arch(x86_64) || arch(i386))
        return 0o40000
        #elseif os(Linux) && (arch(arm64) || arch(arm))
        return 0o200000
        #else
        return nil
        #endif
    }

    /// The default cache directory: `$XDG_CACHE_HOME/caravan/layers` or `~/.cache/caravan/layers`.
    public static var defaultDirectory: String {
        if let xdg = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/caravan/layers" }
        return NSHomeDirectory() + "/.cache/caravan/layers"
    }

    /// Opens (or creates) the cache of the model `sha256` of `size` bytes in `directory`, cut into
    /// `blockSize`-byte blocks. A manifest for another size or block size is discarded. Throws an
    /// error with ``LayerFetchError/cacheBusy`` set when another open cache holds the lock.
    public init(directory: String, sha256: String, size: UInt64, blockSize: UInt64) throws(LayerFetchError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw LayerFetchError("cannot create the layer cache directory \(directory): \(error)")
        }
        path = directory + "/" + sha256 + ".gguf"
        manifestPath = directory + "/" + sha256 + ".blocks.json"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LayerFetchError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            var error = LayerFetchError("\(path) is in use by another worker (\(reason))")
            error.cacheBusy = true
            throw error
        }
        // Read under the lock: another worker may have just finished writing it.
        let fresh = Manifest(sha256: sha256, size: size, blockSize: blockSize, blocks: [:])
        var loaded = fresh
        if let m = Manifest.read(manifestPath), m.sha256 == sha256, m.size == size, m.blockSize == blockSize {
            loaded = m
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            throw LayerFetchError("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        if UInt64(st.st_size) != size {
            loaded = fresh  // another size: whatever it held is not this model's layout
            guard ftruncate(fd, 0) == 0, ftruncate(fd, off_t(size)) == 0 else {
                close(fd)
                throw LayerFetchError("cannot size \(path) to \(size) bytes: \(String(cString: strerror(errno)))")
            }
        }
        self.fd = fd
        self.manifest = loaded
        if let flag = Self.directFlag {
            directFD = open(path, O_WRONLY | O_CLOEXEC | flag)  // -1 (EINVAL) where the file system cannot
        }
    }

    deinit {
        if directFD >= 0 { close(directFD) }
        free(staging)
        close(fd)
    }

    /// Splits `blocks` into those on disk with a matching CRC-32C and those to fetch. A block
    /// whose bytes no longer match is dropped from the manifest. `checked` is called after each
    /// block read back (re-reading a large stage takes a while).
    public func check(_ blocks: [Int], checked: () -> Void = {}) -> (cached: [Int], missing: [Int]) {
        var cached: [Int] = []
        var missing: [Int] = []
        var buffer = [UInt8](repeating: 0, count: Int(manifest.blockSize))
        for b in blocks {
            guard let expected = manifest.blocks[String(b)] else {
                missing.append(b)
                continue
            }
            let range = StageByteRanges.blockBytes(b, blockSize: manifest.blockSize, fileSize: manifest.size)
            let ok = buffer.withUnsafeMutableBytes { raw -> Bool in
                let want = range.count
                var done = 0
                while done < want {
                    let n = pread(fd, raw.baseAddress! + done, want - done, off_t(range.lowerBound) + off_t(done))
                    if n <= 0 { return false }
                    done += n
                }
                return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<want])) == expected
            }
            checked()
            if ok {
                cached.append(b)
            } else {
                manifest.blocks[String(b)] = nil
                dirty = true
                missing.append(b)
            }
        }
        return (cached, missing)
    }

    /// Writes the bytes of block `index` at its offset and records their CRC-32C (persisted by
    /// the next ``commit()``). `checksum` is the CRC-32C of `bytes` when the caller has already
    /// verified it (a model chunk's, checked by the codec); nil computes it here.
    public func write(block index: Int, bytes: UnsafeRawBufferPointer, checksum: UInt32? = nil) throws(LayerFetchError) {
        let range = StageByteRanges.blockBytes(index, blockSize: manifest.blockSize, fileSize: manifest.size)
        guard bytes.count == range.count, let base = bytes.baseAddress else {
            throw LayerFetchError("block \(index) has \(bytes.count) bytes, expected \(range.count)")
        }
        if !writeDirectly(bytes, at: range.lowerBound) {
            if let failure = Self.writeAll(fd, UnsafeRawPointer(base), count: bytes.count, at: range.lowerBound) {
                throw LayerFetchError("cannot write \(path): \(String(cString: strerror(failure)))")
            }
        }
        manifest.blocks[String(index)] = checksum ?? CRC32C.checksum(bytes)
        dirty = true
    }

    /// Writes `bytes` at `offset` with `O_DIRECT` through the staging buffer; false when it was
    /// not written that way (no direct descriptor, not aligned, or the file system refused: then
    /// the cache stops trying and the caller writes it through the page cache).
    private func writeDirectly(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) -> Bool {
        let align = Self.directAlignment
        guard writesDirectly, let base = bytes.baseAddress, bytes.count > 0,
              offset % UInt64(align) == 0, bytes.count % align == 0 else { return false }
        if staging == nil {
            let capacity = (Int(manifest.blockSize) + align - 1) / align * align
            var memory: UnsafeMutableRawPointer?
            guard posix_memalign(&memory, align, capacity) == 0, let memory else { return false }
            staging = memory
        }
        guard let staging, bytes.count <= Int(manifest.blockSize) else { return false }
        staging.copyMemory(from: base, byteCount: bytes.count)
        guard Self.writeAll(directFD, UnsafeRawPointer(staging), count: bytes.count, at: offset) == nil else {
            // Whatever the reason (EINVAL from a file system that opens but cannot do direct
            // writes, an I/O error), the page cache path writes the block again and reports its error.
            close(directFD)
            directFD = -1
            return false
        }
        return true
    }

    /// Writes all `count` bytes at `offset`; the `errno` of a failed write, nil when all landed.
    private static func writeAll(_ fd: Int32, _ base: UnsafeRawPointer, count: Int, at offset: UInt64) -> Int32? {
        var done = 0
        while done < count {
            let n = pwrite(fd, base + done, count - done, off_t(offset) + off_t(done))
            guard n > 0 else { return n < 0 ? errno : EIO }
            done += n
        }
        return nil
    }

    /// Blocks recorded as verified, by index.
    public var heldBlocks: Set<Int> { Set(manifest.blocks.keys.compactMap { Int($0) }) }

    /// Bytes of block `index` (the last block may be short).
    public func bytes(ofBlock index: Int) -> UInt64 {
        UInt64(StageByteRanges.blockBytes(index, blockSize: manifest.blockSize, fileSize: manifest.size).count)
    }

    /// Lets go of `blocks`: they leave the manifest (persisted by the next ``commit()``) and their
    /// bytes are punched out of the sparse file, so the disk space is freed (where the file
    /// system cannot punch holes the bytes stay, unlisted, until the cache is pruned). Returns
    /// the bytes of the blocks that were held.
    @discardableResult
    public func release(_ blocks: [Int]) -> UInt64 {
        var released: UInt64 = 0
        for b in blocks where manifest.blocks.removeValue(forKey: String(b)) != nil {
            let range = StageByteRanges.blockBytes(b, blockSize: manifest.blockSize, fileSize: manifest.size)
            released += UInt64(range.count)
            dirty = true
            _ = Self.punchHole(fd, offset: Int64(range.lowerBound), length: Int64(range.count))
        }
        return released
    }

    /// `fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)`, looked up at
    /// run time (Glibc's Swift module hides it behind `_GNU_SOURCE`); false where it is missing
    /// or the file system refuses.
    private static func punchHole(_ fd: Int32, offset: Int64, length: Int64) -> Bool {
        #if os(Linux)
        typealias Fallocate = @convention(c) (Int32, Int32, Int64, Int64) -> Int32
        guard let symbol = fallocateSymbol else { return false }
        let punchHoleKeepSize: Int32 = 0x02 | 0x01  // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        return unsafeBitCast(symbol, to: Fallocate.self)(fd, punchHoleKeepSize, offset, length) == 0
        #else
        return false
        #endif
    }

    #if os(Linux)
    private nonisolated(unsafe) static let fallocateSymbol: UnsafeMutableRawPointer? = dlsym(nil, "fallocate64")
    #endif

    /// Syncs the data, then replaces the manifest (atomically) when it changed.
    public func commit() throws(LayerFetchError) {
        guard dirty else { return }
        guard fsync(fd) == 0 else { throw LayerFetchError("cannot sync \(path): \(String(cString: strerror(errno)))") }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(manifest).write(to: URL(fileURLWithPath: manifestPath), options: .atomic)
        } catch {
            throw LayerFetchError("cannot write \(manifestPath): \(error)")
        }
        dirty = false
    }
}

extension LayerCache {
    /// What the layer caches in `directory` hold, per model: read from their manifests (the
    /// blocks written and synced; their checksums are checked again only when a pull reuses
    /// them) and the cached GGUF header, without taking the caches' locks. Caches whose header
    /// is not complete, and unreadable ones, are skipped; at most ``CachedLayers/maxModels``,
    /// most recently used first.
    public static func contents(directory: String) -> [CachedLayers] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var found: [(used: Date, layers: CachedLayers)] = []
        for name in names where name.hasSuffix(".blocks.json") {
            let sha = String(name.dropLast(".blocks.json".count))
            let manifestPath = directory + "/" + name
            let path = directory + "/" + sha + ".gguf"
            guard let m = Manifest.read(manifestPath), m.sha256 == sha, m.blockSize > 0, m.blocks["0"] != nil else { continue }
            let present = Set(m.blocks.keys.compactMap { Int($0) })
            guard let file = try? GGUFFile(path: path), UInt64(file.fileSize) == m.size else { continue }
            let base = UInt64(file.dataOffset)
            let header = StageByteRanges.blocks(covering: [0..<base], blockSize: m.blockSize, fileSize: m.size)
            guard header.allSatisfy(present.contains) else { continue }
            let tensors = file.tensorInfos.map { t in
                TensorExtent(name: t.name, bytes: (base + UInt64(t.relativeOffset))..<(base + UInt64(t.relativeOffset) + UInt64(t.byteCount)))
            }
            let held = StageByteRanges.held(tensors: tensors, presentBlocks: present, blockSize: m.blockSize, fileSize: m.size)
            guard !held.layers.isEmpty || held.embedding || held.output else { continue }
            let used = (try? FileManager.default.attributesOfItem(atPath: manifestPath)[.modificationDate] as? Date) ?? .distantPast
            found.append((used, CachedLayers(modelSHA256: sha, layers: held.layers, embedding: held.embedding, output: held.output)))
        }
        return found.sorted { $0.used > $1.used }.prefix(CachedLayers.maxModels).map(\.layers)
    }
}
