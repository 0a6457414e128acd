import Foundation

/// A model file's content identity: SHA-256 and size.
public struct ModelFingerprint: Sendable, Equatable {
    /// File name without directories.
    public var name: String
    /// Lowercase hex SHA-256 of the whole file.
    public var sha256: String
    /// Size in bytes.
    public var size: UInt64

    /// Creates a fingerprint.
    public init(name: String, sha256: String, size: UInt64) {
        self.name = name
        self.sha256 = sha256
        self.size = size
    }

    /// Why a file could not be fingerprinted.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        /// What went wrong, naming the file.
        public let description: String
    }

    /// Hashes the file at `path` once and caches the result next to it (`<path>.sha256`, holding the
    /// hash, size and modification time); later calls read the cache while size and time match.
    /// When the cache cannot be written (read-only directory) the hash is still returned.
    public static func of(path: String) throws(Failure) -> ModelFingerprint {
        let url = URL(fileURLWithPath: path)
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw Failure(description: "cannot read \(path): \(error.localizedDescription)")
        }
        let size = (attributes[.size] as? NSNumber)?.uint64Value ?? 0
        let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let stamp = "\(size) \(Int64(mtime * 1000))"
        let cachePath = path + ".sha256"
        if let cached = try? String(contentsOfFile: cachePath, encoding: .utf8) {
            let parts = cached.split(separator: "\n", omittingEmptySubsequences: false)
            if parts.count >= 2, parts[1] == stamp, parts[0].utf8.count == 64 {
                return ModelFingerprint(name: url.lastPathComponent, sha256: String(parts[0]), size: size)
            }
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw Failure(description: "cannot open \(path) for reading")
        }
        defer { try? handle.close() }
        var hash = SHA256()
        while true {
            let chunk: Data?
            do {
                chunk = try handle.read(upToCount: 4 << 20)
            } catch {
                throw Failure(description: "cannot read \(path): \(error.localizedDescription)")
            }
            guard let chunk, !chunk.isEmpty else { break }
            chunk.withUnsafeBytes { hash.update($0) }
        }
        let hex = SHA256.hexString(hash.finalize())
        try? "\(hex)\n\(stamp)\n".write(toFile: cachePath, atomically: true, encoding: .utf8)
        return ModelFingerprint(name: url.lastPathComponent, sha256: hex, size: size)
    }
}
