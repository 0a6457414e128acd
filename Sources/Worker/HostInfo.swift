import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Facts about the machine a daemon runs on.
public enum HostInfo {
    /// Logical cores available to this process.
    public static var cores: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Total and available memory from `/proc/meminfo` (bytes); nil where the file does not exist.
    public static func memory() -> (total: UInt64, available: UInt64)? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        return parseMeminfo(text)
    }

    /// Bytes free for an unprivileged user on the file system holding `path` (or, while `path`
    /// does not exist yet, its nearest existing parent); nil when none can be read.
    public static func diskFree(path: String) -> UInt64? { diskSpace(path: path)?.free }

    /// Size and bytes free for an unprivileged user of the file system holding `path` (or its
    /// nearest existing parent); nil when none can be read.
    public static func diskSpace(path: String) -> (total: UInt64, free: UInt64)? {
        var p = path.isEmpty ? "." : path
        while true {
            var st = statvfs()
            if statvfs(p, &st) == 0 {
                return (UInt64(st.f_blocks) * UInt64(st.f_frsize), UInt64(st.f_bavail) * UInt64(st.f_frsize))
            }
            let parent = (p as NSString).deletingLastPathComponent
            if parent.isEmpty || parent == p { return nil }
            p = parent
        }
    }

    /// Parses `/proc/meminfo` text: `MemTotal` and `MemAvailable` (falling back to `MemFree`), in kB.
    public static func parseMeminfo(_ text: String) -> (total: UInt64, available: UInt64)? {
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            guard parts.count >= 2, let kb = UInt64(parts[1]) else { continue }
            values[String(parts[0])] = kb * 1024
        }
        guard let total = values["MemTotal"], let available = values["MemAvailable"] ?? values["MemFree"] else {
            return nil
        }
        return (total, available)
    }
}
