import CaravanCore
import Coordinator
import Foundation
import XCTest

/// The job journal on disk: typed entries in the file's JSON form (the one earlier coordinators
/// wrote), torn writes, failed writes, compaction while running.
final class JobJournalTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UInt32.random(in: 0...UInt32.max))").path
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Job `name` ("job-" + name).
    private func id(_ name: String) -> JobID { JobID("job-\(name)")! }

    private func submission(_ job: String, sequence: UInt64) -> JournalEntry {
        .submitted(JournalSubmission(job: id(job), sequence: SequenceID(sequence), clientRequestID: "c-\(job)", prompt: [1, 2, 3],
                                     seed: 9, submittedMs: 1_700_000_000_000))
    }

    private func token(_ job: String, _ t: Int32, _ text: String) -> JournalEntry { .token(job: id(job), id: t, text: text) }

    private func finished(_ job: String) -> JournalEntry { .ended(job: id(job), outcome: .finished(.length, text: "")) }

    /// Every kind of entry and outcome goes to the file and comes back as it was.
    func testTypedEntriesRoundTripThroughTheFile() throws {
        var sampling = SamplingParameters(temperature: 0.7, topK: 5, topP: 0.9, minP: 0.02, repeatPenalty: 1.1, repeatLastN: 32,
                                          frequencyPenalty: 0.5, presencePenalty: -0.5, stop: ["\n\n"])
        sampling.topLogprobs = 3
        let entries: [JournalEntry] = [
            .epoch(7),
            .submitted(JournalSubmission(job: id("a1"), sequence: SequenceID(4), clientRequestID: "r", prompt: [5, 6],
                                         sampling: sampling, maxTokens: 12, seed: 1234, submittedMs: 1_700_000_000_123, owner: "KEY")),
            .submitted(JournalSubmission(job: id("b2"), sequence: SequenceID(5), clientRequestID: "", prompt: [7], seed: .max,
                                         submittedMs: 1)),
            token("a1", 42, "Hi"),
            .ended(job: id("a1"), outcome: .finished(.stopString, text: "!")),
            .ended(job: id("b2"), outcome: .finished(.cancelled, text: "")),
            .ended(job: id("a1"), outcome: .failed(message: "no pipeline")),
            .ended(job: id("b2"), outcome: .finished(.endOfSequence, text: "x")),
        ]
        let journal = try FileJobJournal(directory: directory)
        for e in entries { journal.append(e) }
        XCTAssertEqual(try journal.load(), entries)
        XCTAssertEqual(journal.failedWrites, 0)
        XCTAssertEqual(JobOutcome.finished(.cancelled, text: "").state, .cancelled)
        XCTAssertEqual(JobOutcome.finished(.length, text: "").state, .finished)
        XCTAssertEqual(JobOutcome.failed(message: "x").state, .failed)
    }

    /// Lines as coordinators before typed entries wrote them read as the typed entries they mean;
    /// a line whose job id, state or finish reason is not one is skipped as damaged.
    func testLinesOfAnEarlierCoordinatorRead() throws {
        let lines = [
            #"{"epoch":{"_0":3}}"#,
            #"{"submitted":{"_0":{"job":"job-ab","sequence":2,"clientRequestID":"c","prompt":[1,2],"sampling":"{\"temperature\": 0.5, \"repetitionPenalty\": 1.2, \"seed\": \"7\", \"maxTokens\": 4}","submittedMs":10}}}"#,
            #"{"token":{"job":"job-ab","id":9,"text":"x"}}"#,
            #"{"ended":{"job":"job-ab","state":"cancelled","reason":"4","text":"t"}}"#,
            #"{"ended":{"job":"job-ab","state":"failed","reason":"boom","text":""}}"#,
            #"{"ended":{"job":"job-ab","state":"finished","reason":"2","text":""}}"#,
            #"{"ended":{"job":"not an id","state":"finished","reason":"2","text":""}}"#,
            #"{"ended":{"job":"job-ab","state":"paused","reason":"2","text":""}}"#,
            #"{"ended":{"job":"job-ab","state":"finished","reason":"0","text":""}}"#,
        ]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(lines.joined(separator: "\n").utf8 + [10]).write(to: URL(fileURLWithPath: directory + "/jobs.journal"))
        let loaded = try FileJobJournal(directory: directory).load()
        var sampling = SamplingParameters()
        sampling.temperature = 0.5
        sampling.repeatPenalty = 1.2
        sampling.topK = 0
        sampling.topP = 1
        sampling.minP = 0
        XCTAssertEqual(loaded, [
            .epoch(3),
            .submitted(JournalSubmission(job: id("ab"), sequence: SequenceID(2), clientRequestID: "c", prompt: [1, 2],
                                         sampling: sampling, maxTokens: 4, seed: 7, submittedMs: 10)),
            token("ab", 9, "x"),
            .ended(job: id("ab"), outcome: .finished(.cancelled, text: "t")),
            .ended(job: id("ab"), outcome: .failed(message: "boom")),
            .ended(job: id("ab"), outcome: .finished(.length, text: "")),
        ])
        if case .submitted(let s) = loaded[1] {
            XCTAssertEqual(s.parameters(contextLimit: 256).maxTokens, 4)
            XCTAssertEqual(s.parameters(contextLimit: 256).seed, 7)
        }
    }

    /// A power cut tore the last line: everything before it is restored, and what is appended
    /// next starts on a line of its own (it was glued to the torn line and lost with it).
    func testATornLastLineLosesOnlyItself() throws {
        let entries: [JournalEntry] = [.epoch(3), submission("1", sequence: 1), token("1", 42, "Hi"), token("1", 43, " there")]
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
        let next = finished("1")
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
                let job = "\(jobs)"
                journal.append(submission(job, sequence: UInt64(jobs)))
                for t in 0..<500 { journal.append(token(job, Int32(t), "t")) }
                journal.append(finished(job))
                if let kept = try journal.compactIfNeeded(keepEnded: 2) { largest = max(largest, kept) }
            }
            XCTAssertGreaterThan(largest, 0, "round \(round): compacted while running")
        }
        journal.append(submission("live", sequence: 999))
        journal.append(token("live", 7, "x"))
        let loaded = try journal.load()
        XCTAssertLessThan(loaded.count, 2 * JournalCompaction.minimumGrowth, "bounded")
        XCTAssertLessThanOrEqual(largest, 2 * 502 + 1)
        let compacted = JournalCompaction.compact(loaded, keepEnded: 2)
        XCTAssertEqual(compacted.first, .epoch(1))
        let kept = Set(compacted.compactMap { e -> JobID? in if case .submitted(let s) = e { s.job } else { nil } })
        XCTAssertEqual(kept, [id("59"), id("60"), id("live")])
        XCTAssertEqual(compacted.filter { if case .token = $0, $0.job == id("live") { true } else { false } }.count, 1)
    }

    /// Compaction keeps exactly what a restart restores: every unfinished job, the last ended
    /// ones, the highest epoch, in order.
    func testCompactionKeepsUnfinishedJobsAndTheLastEndedOnes() {
        let entries: [JournalEntry] = [
            .epoch(2), submission("a", sequence: 1), token("a", 1, "x"),
            submission("b", sequence: 2), finished("a"),
            submission("c", sequence: 3), token("b", 5, "y"), .epoch(5),
            .ended(job: id("c"), outcome: .failed(message: "boom")),
        ]
        XCTAssertEqual(JournalCompaction.compact(entries, keepEnded: 1), [
            .epoch(5), submission("b", sequence: 2), token("b", 5, "y"),
            submission("c", sequence: 3), .ended(job: id("c"), outcome: .failed(message: "boom")),
        ])
    }
}

private final class LockedStrings: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}
