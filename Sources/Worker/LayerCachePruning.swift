import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension LayerCache {
    /// Marks the cache of model `sha256` in `directory` as in use now (its manifest's modification
    /// time), so that ``prune(directory:keeping:unusedFor:now:)`` run by another worker sharing
    /// the directory keeps it: a worker serving a stage from its cache, and keeping standby copies
    /// there, calls this while it does (the cache is locked only while a pull writes to it).
    /// Returns false when there is no such cache.
    @discardableResult
    public static func markUsed(directory: String, sha256: String, now: Date = Date()) -> Bool {
        let manifest = directory + "/" + sha256 + ".blocks.json"
        do {
            try FileManager.default.setAttributes([.modificationDate: now], ofItemAtPath: manifest)
            return true
        } catch {
            return false
        }
    }

    /// Removes the caches of other models in `directory` that nobody has used for `unusedFor`
    /// seconds (judged by the newest modification time of the model's two files): every model
    /// pulled once would otherwise stay on disk forever. A cache held open by a worker (its lock
    /// is taken) is never removed, nor is the cache of `keeping`, nor one a worker serving from
    /// it marked used within `unusedFor` (``markUsed(directory:sha256:now:)``: its stage's layers
    /// and its standby copies stay). Files that are not caches are
    /// left alone. Returns the SHA-256 of every model whose cache was removed.
    @discardableResult
    public static func prune(directory: String, keeping: String, unusedFor: TimeInterval,
                             now: Date = Date()) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for name in names where name.hasSuffix(".gguf") {
            let sha = String(name.dropLast(".gguf".count))
            guard sha != keeping, sha.count == 64, sha.allSatisfy(\.isHexDigit) else { continue }
            let data = directory + "/" + name
            let manifest = directory + "/" + sha + ".blocks.json"
            let lastUse = [data, manifest].compactMap { path in
                (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            }.max()
            guard let lastUse, now.timeIntervalSince(lastUse) >= unusedFor else { continue }
            // Take the cache's lock the way an opening worker does: busy means in use.
            let fd = open(data, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }
            unlink(manifest)
            unlink(data)
            removed.append(sha)
        }
        return removed
    }
}
