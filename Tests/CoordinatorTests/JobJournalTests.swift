import Coordinator
import Foundation
import XCTest

/// The job journal on disk: torn writes, failed writes, compaction while running.
final class JobJournalTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UInt32.random(in: 0...UInt32.max))").path
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func submission(_ job: String, sequence: UInt64) -> JournalEntry {
        .submitted(JournalSubmission(job: job, sequence: sequence, clientRequestID: "c-\(job)", prompt: [1, 2, 3],
                                     sampling: "{}", submittedMs: 1_700_000_000_000))
    }

    /// A power cut tore the last line: everything before it is restored, and what is appended
    /// next starts on a line of its own (it was glued to the torn line and lost with it).
    func testATornLastLineLosesOnlyItself() throws {
        let entries: [JournalEntry] = [.epoch(3), submission("job-1", sequence: 1), .token(job: "job-1", id: 42, text: "Hi"),
                                       .token(job: "job-1", id: 43, text: " there")]
        do {
            let journal = try FileJobJournal(directory: directory)
            for e in entries { journal.append(e) }
            XCTAssertEqual(try journal.load(), entries)
        }
        let path = (directory as NSString).appendingPathComponent("jobs.journal")
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber).intValue
        XCTAssertEqual(truncate(path, off_t(size - 9)), 0, "cut the last line")

        let reopened = try FileJobJournal(directory: directory)
        XCTAssertEqual(try reopened.load(), Array(entries.dropLast()))
        let next = JournalEntry.ended(job: "job-1", state: "finished", reason: "2", text: "")
        reopened.append(next)
        XCTAssertEqual(try reopened.load(), Array(entries.dropLast()) + [next])
        XCTAssertEqual(reopened.failedWrites, 0)
    }

    /// An append that fails (a full disk: `/dev/full`) is counted and reported, not ignored.
    func testFailedAppendsAreCountedAndReported() throws {
        let reported = LockedStrings()
        let journal = try FileJobJournal(directory: "/dev", name: "full") { reported.add($0.description) }
        journal.append(.epoch(1))
        journal.append(.epoch(2))
        XCTAssertEqual(journal.failedWrites, 2)
        XCTAssertEqual(reported.all.count, 2)
        XCTAssertTrue(reported.all.last?.contains("/dev/full") ?? false, "\(reported.all)")
        XCTAssertTrue(reported.all.last?.contains("2 failed so far") ?? false, "\(reported.all)")
    }

    /// One line per token: a running coordinator's journal is compacted once it has grown by its
    /// size (and the minimum), keeping unfinished jobs and the last ended ones, so it stays bounded.
    func testCompactionWhileRunningKeepsTheJournalBounded() throws {
        let journal = try FileJobJournal(directory: directory)
        try journal.rewrite([.epoch(1)])
        XCTAssertNil(try journal.compactIfNeeded(keepEnded: 2), "nothing to compact yet")
        var jobs = 0
        var largest = 0
        // 60 ended jobs of 500 tokens, then one still running.
        for round in 0..<2 {
            for _ in 0..<30 {
                jobs += 1
                let job = "job-\(jobs)"
                journal.append(submission(job, sequence: UInt64(jobs)))
                for t in 0..<500 { journal.append(.token(job: job, id: Int32(t), text: "t")) }
                journal.append(.ended(job: job, state: "finished", reason: "2", text: ""))
                if let kept = try journal.compactIfNeeded(keepEnded: 2) { largest = max(largest, kept) }
            }
            XCTAssertGreaterThan(largest, 0, "round \(round): compacted while running")
        }
        journal.append(submission("job-live", sequence: 999))
        journal.append(.token(job: "job-live", id: 7, text: "x"))
        let loaded = try journal.load()
        XCTAssertLessThan(loaded.count, 2 * JournalCompaction.minimumGrowth, "bounded")
        XCTAssertLessThanOrEqual(largest, 2 * 502 + 1)
        let compacted = JournalCompaction.compact(loaded, keepEnded: 2)
        XCTAssertEqual(compacted.first, .epoch(1))
        let kept = Set(compacted.compactMap { e -> String? in if case .submitted(let s) = e { s.job } else { nil } })
        XCTAssertEqual(kept, ["job-59", "job-60", "job-live"])
        XCTAssertEqual(compacted.filter { if case .token(job: "job-live", _, _) = $0 { true } else { false } }.count, 1)
    }

    /// Compaction keeps exactly what a restart restores: every unfinished job, the last ended
    /// ones, the highest epoch, in order.
    func testCompactionKeepsUnfinishedJobsAndTheLastEndedOnes() {
        let entries: [JournalEntry] = [
            .epoch(2), submission("a", sequence: 1), .token(job: "a", id: 1, text: "x"),
            submission("b", sequence: 2), .ended(job: "a", state: "finished", reason: "2", text: ""),
            submission("c", sequence: 3), .token(job: "b", id: 5, text: "y"), .epoch(5),
            .ended(job: "c", state: "failed", reason: "boom", text: ""),
        ]
        XCTAssertEqual(JournalCompaction.compact(entries, keepEnded: 1), [
            .epoch(5), submission("b", sequence: 2), .token(job: "b", id: 5, text: "y"),
            submission("c", sequence: 3), .ended(job: "c", state: "failed", reason: "boom", text: ""),
        ])
    }
}

private final class LockedStrings: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}
