import CaravanCore
import Foundation

/// One record of the coordinator's job journal. Typed: the file's JSON form (one line per entry,
/// the form every earlier coordinator wrote) is read and written in `JournalEntry+File.swift`.
public enum JournalEntry: Sendable, Equatable {
    /// A job was accepted.
    case submitted(JournalSubmission)
    /// A job generated a token (`text` is what was streamed with it).
    case token(job: JobID, id: Int32, text: String)
    /// A job ended.
    case ended(job: JobID, outcome: JobOutcome)
    /// A plan epoch was used (epochs stay unique across coordinator restarts).
    case epoch(UInt64)

    /// The job the entry is about (nil for an epoch).
    public var job: JobID? {
        switch self {
        case .submitted(let s): s.job
        case .token(let job, _, _), .ended(let job, _): job
        case .epoch: nil
        }
    }
}

/// How a job ended, as the journal keeps it.
public enum JobOutcome: Sendable, Equatable {
    /// It finished (or was cancelled: reason ``JobFinishReason/cancelled``) with `text` as its
    /// last streamed text.
    case finished(JobFinishReason, text: String)
    /// It failed with `message`.
    case failed(message: String)

    /// The job's final state.
    public var state: JobState {
        switch self {
        case .finished(.cancelled, _): .cancelled
        case .finished: .finished
        case .failed: .failed
        }
    }
}

/// What the journal keeps of an accepted job: enough to rebuild its generation session.
public struct JournalSubmission: Sendable, Equatable {
    /// The job id.
    public var job: JobID
    /// The sequence its caches use.
    public var sequence: SequenceID
    /// The client's request id (echoed in events).
    public var clientRequestID: String
    /// The prompt's token ids.
    public var prompt: [Int32]
    /// The sampling chain, penalties, stop strings and log-probabilities (its `maxTokens` and
    /// `seed` are not read: ``maxTokens`` and ``seed`` say them).
    public var sampling: SamplingParameters
    /// Most tokens to generate; nil = up to the context limit of the coordinator that runs it.
    public var maxTokens: Int?
    /// The seed of its random draws (resolved at admission: a restored job draws the same numbers).
    public var seed: UInt64
    /// Submission time, Unix milliseconds.
    public var submittedMs: UInt64
    /// The submitting client's CURVE key (nil in plain mode, and in journals written before roles).
    public var owner: String?

    /// Creates a submission record.
    public init(job: JobID, sequence: SequenceID, clientRequestID: String, prompt: [Int32],
                sampling: SamplingParameters = SamplingParameters(), maxTokens: Int? = nil, seed: UInt64 = 0,
                submittedMs: UInt64, owner: String? = nil) {
        self.job = job
        self.sequence = sequence
        self.clientRequestID = clientRequestID
        self.prompt = prompt
        self.sampling = JobRequest.chain(of: sampling)
        self.maxTokens = maxTokens
        self.seed = seed
        self.submittedMs = submittedMs
        self.owner = owner
    }

    /// The parameters the job's session runs with: `maxTokens` nil means up to `contextLimit`.
    public func parameters(contextLimit: Int) -> SamplingParameters {
        JobRequest(input: .tokens(prompt), sampling: sampling, maxTokens: maxTokens, seed: seed)
            .parameters(contextLimit: contextLimit, drawnSeed: seed)
    }
}

/// Where the coordinator persists its jobs so that a restart continues them. Appends must be
/// durable once they return (at least against a crash of the process); one that fails is counted
/// (``failedWrites``) and reported, never silently lost.
public protocol JobJournal: Sendable {
    /// Every entry written so far, oldest first.
    func load() throws(JournalError) -> [JournalEntry]
    /// Appends one entry.
    func append(_ entry: JournalEntry)
    /// Replaces the journal with `entries` (compaction at start).
    func rewrite(_ entries: [JournalEntry]) throws(JournalError)
    /// Compacts (``JournalCompaction``) when the journal has grown by at least its size after the
    /// last compaction and ``JournalCompaction/minimumGrowth`` entries, so that it stays bounded
    /// while the coordinator runs. Returns the entries kept, or nil when it was not due.
    func compactIfNeeded(keepEnded: Int) throws(JournalError) -> Int?
    /// Appends that failed since start (disk full, I/O error).
    var failedWrites: Int { get }
}

/// What a compaction keeps: the highest plan epoch, every unfinished job (submission and tokens)
/// and the last `keepEnded` ended jobs (submission, tokens, end), in their order. The same as what
/// a restart restores (``JobDesk``), so compacting changes nothing a restart would see.
public enum JournalCompaction {
    /// Entries appended since the last compaction before a running journal compacts again (at
    /// least; also at least as many as the last compaction kept).
    public static let minimumGrowth = 10_000

    /// The entries to keep of `entries`.
    public static func compact(_ entries: [JournalEntry], keepEnded: Int) -> [JournalEntry] {
        var epoch: UInt64 = 0
        var order: [JobID] = []
        var submissions: [JobID: JournalSubmission] = [:]
        var tokens: [JobID: [JournalEntry]] = [:]
        var ends: [JobID: JournalEntry] = [:]
        for e in entries {
            switch e {
            case .submitted(let s):
                if submissions[s.job] == nil { order.append(s.job) }
                submissions[s.job] = s
            case .token(let job, _, _): tokens[job, default: []].append(e)
            case .ended(let job, _): ends[job] = e
            case .epoch(let n): epoch = max(epoch, n)
            }
        }
        let keptEnded = Set(order.filter { ends[$0] != nil }.suffix(max(0, keepEnded)))
        var out: [JournalEntry] = [.epoch(epoch)]
        for job in order {
            guard let submission = submissions[job] else { continue }
            if ends[job] != nil, !keptEnded.contains(job) { continue }
            out.append(.submitted(submission))
            out += tokens[job] ?? []
            if let end = ends[job] { out.append(end) }
        }
        return out
    }

    /// Whether a journal that kept `kept` entries at its last compaction and has taken `appended`
    /// since is due again.
    static func due(kept: Int, appended: Int) -> Bool { appended >= max(minimumGrowth, kept) }
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
    public func compactIfNeeded(keepEnded: Int) throws(JournalError) -> Int? { entries.compactIfNeeded(keepEnded: keepEnded) }
    public var failedWrites: Int { 0 }
}

private final class LockedEntries: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [JournalEntry] = []
    private var kept = 0
    func all() -> [JournalEntry] { lock.withLock { items } }
    func append(_ e: JournalEntry) { lock.withLock { items.append(e) } }
    func replace(_ e: [JournalEntry]) {
        lock.withLock {
            items = e
            kept = e.count
        }
    }
    func compactIfNeeded(keepEnded: Int) -> Int? {
        lock.withLock {
            guard JournalCompaction.due(kept: kept, appended: items.count - kept) else { return nil }
            items = JournalCompaction.compact(items, keepEnded: keepEnded)
            kept = items.count
            return kept
        }
    }
}

/// An append-only file of JSON lines, one ``JournalEntry`` per line. Each append is one `write`
/// of a whole line (so a killed coordinator loses nothing the kernel accepted); a torn last line
/// from a power cut is skipped on load, and the next append starts a new line after it. A failed
/// append is cut off again (or, if that fails too, followed by a new line), counted and reported
/// to `onError`. Compaction writes a new file, `fsync`s it, renames it over the old one and
/// `fsync`s the directory (so the rename itself survives a power cut); it runs at start and
/// whenever the file has doubled (``compactIfNeeded(keepEnded:)``).
public final class FileJobJournal: JobJournal, @unchecked Sendable {
    /// The journal file.
    public let path: String
    private let directory: String
    private let lock = NSLock()
    private var fd: Int32 = -1
    private let encoder = JSONEncoder()
    private let onError: @Sendable (JournalError) -> Void
    /// The file may end in a torn line: the next append writes a newline first.
    private var needsNewline = false
    private var failed = 0
    /// Entries kept by the last compaction, and appended since.
    private var kept = 0
    private var appended = 0

    /// Opens (creating) `directory/<name>`, creating the directory; `onError` hears of every
    /// append that failed.
    public init(directory: String, name: String = "jobs.journal",
                onError: @escaping @Sendable (JournalError) -> Void = { _ in }) throws(JournalError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw JournalError(description: "cannot create the state directory \(directory): \(error)")
        }
        self.directory = directory
        self.onError = onError
        path = (directory as NSString).appendingPathComponent(name)
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JournalError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        needsNewline = Self.endsTorn(path)
    }

    /// Appends that failed since the journal was opened.
    public var failedWrites: Int { lock.withLock { failed } }

    /// Whether the regular file at `path` is non-empty and does not end with a newline.
    private static func endsTorn(_ path: String) -> Bool {
        let rfd = open(path, O_RDONLY | O_CLOEXEC)
        guard rfd >= 0 else { return false }
        defer { close(rfd) }
        var st = stat()
        guard fstat(rfd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size > 0 else { return false }
        var last: UInt8 = 0
        return pread(rfd, &last, 1, st.st_size - 1) == 1 && last != UInt8(ascii: "\n")
    }

    deinit { if fd >= 0 { close(fd) } }

    public func load() throws(JournalError) -> [JournalEntry] {
        lock.lock()
        defer { lock.unlock() }
        return try loadLocked()
    }

    private func loadLocked() throws(JournalError) -> [JournalEntry] {
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
        let bytes: Data
        do {
            bytes = try encoder.encode(entry) + [UInt8(ascii: "\n")]
        } catch {
            report(JournalError(description: "cannot encode a journal entry for \(path): \(error)"))
            return
        }
        let failure = lock.withLock { () -> JournalError? in
            appended += 1
            let line = needsNewline ? Data([UInt8(ascii: "\n")]) + bytes : bytes
            var st = stat()
            let before = fstat(fd, &st) == 0 ? st.st_size : -1
            guard !Self.writeAll(fd, line) else {
                needsNewline = false
                return nil
            }
            let reason = String(cString: strerror(errno))
            failed += 1
            // Cut the torn line off again; if that fails, the next append starts a new line.
            needsNewline = !(before >= 0 && ftruncate(fd, before) == 0)
            return JournalError(description: "cannot append to \(path): \(reason) (\(failed) failed so far)")
        }
        if let failure { report(failure) }
    }

    private func report(_ error: JournalError) { onError(error) }

    public func compactIfNeeded(keepEnded: Int) throws(JournalError) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard JournalCompaction.due(kept: kept, appended: appended) else { return nil }
        // Under the lock: no append can slip in between reading and replacing the file.
        let entries = JournalCompaction.compact(try loadLocked(), keepEnded: keepEnded)
        try replaceLocked(entries)
        return entries.count
    }

    public func rewrite(_ entries: [JournalEntry]) throws(JournalError) {
        lock.lock()
        defer { lock.unlock() }
        try replaceLocked(entries)
    }

    private func replaceLocked(_ entries: [JournalEntry]) throws(JournalError) {
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
        guard rename(temporary, path) == 0 else {
            throw JournalError(description: "cannot replace \(path): \(String(cString: strerror(errno)))")
        }
        let reopened = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard reopened >= 0 else {
            throw JournalError(description: "cannot reopen \(path): \(String(cString: strerror(errno)))")
        }
        close(fd)
        fd = reopened
        needsNewline = false
        kept = entries.count
        appended = 0
        // The rename is durable only once the directory is.
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0, fsync(dfd) == 0 else {
            let reason = String(cString: strerror(errno))
            if dfd >= 0 { close(dfd) }
            throw JournalError(description: "cannot sync the state directory \(directory): \(reason)")
        }
        close(dfd)
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
