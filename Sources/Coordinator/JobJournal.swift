import Foundation

/// One record of the coordinator's job journal.
public enum JournalEntry: Codable, Sendable, Equatable {
    /// A job was accepted.
    case submitted(JournalSubmission)
    /// A job generated a token (`text` is what was streamed with it).
    case token(job: String, id: Int32, text: String)
    /// A job ended: `state` is "finished", "cancelled" or "failed"; `text` the final streamed text.
    case ended(job: String, state: String, reason: String, text: String)
    /// A plan epoch was used (epochs stay unique across coordinator restarts).
    case epoch(UInt64)
}

/// What the journal keeps of an accepted job: enough to rebuild its generation session.
public struct JournalSubmission: Codable, Sendable, Equatable {
    /// The job id.
    public var job: String
    /// The sequence id its caches use.
    public var sequence: UInt64
    /// The client's request id (echoed in events).
    public var clientRequestID: String
    /// The prompt's token ids.
    public var prompt: [Int32]
    /// The sampling parameters as protobuf JSON (`Caravan_V1_SamplingParameters`), seed resolved.
    public var sampling: String
    /// Submission time, Unix milliseconds.
    public var submittedMs: UInt64

    /// Creates a submission record.
    public init(job: String, sequence: UInt64, clientRequestID: String, prompt: [Int32], sampling: String,
                submittedMs: UInt64) {
        self.job = job
        self.sequence = sequence
        self.clientRequestID = clientRequestID
        self.prompt = prompt
        self.sampling = sampling
        self.submittedMs = submittedMs
    }
}

/// Where the coordinator persists its jobs so that a restart continues them. Appends must be
/// durable once they return (at least against a crash of the process).
public protocol JobJournal: Sendable {
    /// Every entry written so far, oldest first.
    func load() throws(JournalError) -> [JournalEntry]
    /// Appends one entry.
    func append(_ entry: JournalEntry)
    /// Replaces the journal with `entries` (compaction at start).
    func rewrite(_ entries: [JournalEntry]) throws(JournalError)
}

/// Why the journal cannot be read or written.
public struct JournalError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, naming the file.
    public let description: String
}

/// A journal in memory (tests, and coordinators started without a state directory).
public final class InMemoryJobJournal: JobJournal {
    private let entries = LockedEntries()

    /// An empty journal.
    public init() {}

    public func load() throws(JournalError) -> [JournalEntry] { entries.all() }
    public func append(_ entry: JournalEntry) { entries.append(entry) }
    public func rewrite(_ entries: [JournalEntry]) throws(JournalError) { self.entries.replace(entries) }
}

private final class LockedEntries: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [JournalEntry] = []
    func all() -> [JournalEntry] { lock.withLock { items } }
    func append(_ e: JournalEntry) { lock.withLock { items.append(e) } }
    func replace(_ e: [JournalEntry]) { lock.withLock { items = e } }
}

/// An append-only file of JSON lines, one ``JournalEntry`` per line. Each append is one `write`
/// of a whole line (so a killed coordinator loses nothing the kernel accepted); a torn last line
/// from a power cut is skipped on load. Compaction writes a new file and renames it over the old.
public final class FileJobJournal: JobJournal, @unchecked Sendable {
    /// The journal file.
    public let path: String
    private let lock = NSLock()
    private var fd: Int32 = -1
    private let encoder = JSONEncoder()

    /// Opens (creating) `directory/<name>`, creating the directory.
    public init(directory: String, name: String = "jobs.journal") throws(JournalError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw JournalError(description: "cannot create the state directory \(directory): \(error)")
        }
        path = (directory as NSString).appendingPathComponent(name)
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JournalError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { if fd >= 0 { close(fd) } }

    public func load() throws(JournalError) -> [JournalEntry] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        var out: [JournalEntry] = []
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            // A line that does not decode is a torn write (or damage): skip it, keep the rest.
            if let entry = try? decoder.decode(JournalEntry.self, from: Data(line)) { out.append(entry) }
        }
        return out
    }

    public func append(_ entry: JournalEntry) {
        guard var bytes = try? encoder.encode(entry) else { return }
        bytes.append(UInt8(ascii: "\n"))
        lock.withLock { _ = Self.writeAll(fd, bytes) }
    }

    public func rewrite(_ entries: [JournalEntry]) throws(JournalError) {
        var data = Data()
        for e in entries {
            guard let line = try? encoder.encode(e) else { continue }
            data.append(line)
            data.append(UInt8(ascii: "\n"))
        }
        let temporary = path + ".tmp"
        let tfd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard tfd >= 0 else { throw JournalError(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let ok = Self.writeAll(tfd, data) && fsync(tfd) == 0
        close(tfd)
        guard ok else { throw JournalError(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        lock.lock()
        defer { lock.unlock() }
        guard rename(temporary, path) == 0 else {
            throw JournalError(description: "cannot replace \(path): \(String(cString: strerror(errno)))")
        }
        close(fd)
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
    }

    @discardableResult
    private static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
    }
}
