import Foundation

/// Key files on disk: created private from the first byte, and secret keys that others can read
/// refused.
///
/// A file written and then `chmod`-ed is readable by anyone for a moment (and for good if the
/// `chmod` fails); `create(_:contents:)` opens it with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode
/// 0600, so it never exists with wider permissions and never follows a planted symlink.
public enum KeyFile {
    /// Why a key file cannot be written or read.
    public struct Failure: Error, CustomStringConvertible, Sendable, Equatable {
        /// What went wrong, naming the file.
        public let description: String
        /// The file already existed (or a symlink stood in its place): nothing was written.
        public let exists: Bool
    }

    /// Creates `path` with `contents`, mode 0600 from the start; fails (with ``Failure/exists``)
    /// when anything is already there, a dangling symlink included. The data is on disk when it
    /// returns.
    public static func create(_ path: String, contents: String) throws(Failure) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            throw Failure(description: "cannot create \(path): \(String(cString: strerror(code)))", exists: code == EEXIST)
        }
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                unlink(path)
                throw Failure(description: "cannot write \(path): \(reason)", exists: false)
            }
            offset += n
        }
        guard fsync(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(path)
            throw Failure(description: "cannot write \(path): \(reason)", exists: false)
        }
    }

    /// The text of the secret key file `path` (at most 4 KiB). Refused when group or others have
    /// any permission on it (like ssh: a secret others can read is no longer secret), or when it
    /// is not a regular file.
    public static func readSecret(_ path: String) throws(Failure) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw Failure(description: "cannot read the key file \(path): \(String(cString: strerror(errno)))", exists: false)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw Failure(description: "cannot read the key file \(path): \(String(cString: strerror(errno)))", exists: false)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw Failure(description: "the key file \(path) is not a regular file", exists: false)
        }
        let permissions = st.st_mode & 0o777
        guard permissions & 0o077 == 0 else {
            throw Failure(description: "the secret key file \(path) is accessible by group or others (mode "
                + "\(String(permissions, radix: 8))); make it private: chmod 600 \(path)", exists: false)
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var count = 0
        while count < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "cannot read the key file \(path): \(String(cString: strerror(errno)))", exists: false)
            }
            if n == 0 { break }
            count += n
        }
        return String(decoding: buffer.prefix(count), as: UTF8.self)
    }
}
