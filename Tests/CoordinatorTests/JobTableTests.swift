import CaravanCore
import CaravanTesting
import GGUF
import Inference
import Tokenizer
import XCTest
@testable import Coordinator

/// The job table as a state machine, without lanes, sockets or a clock: every transition of a
/// job's life, replays, cancellation while a job is between pipelines, unknown ids, the KV room
/// queue, the outbox of events, and a restart from typed journal entries.
final class JobTableTests: XCTestCase {
    static let tokenizer = Result { try Tokenizer(gguf: try GGUFFile(path: try TinyModel().write())) }
    let t0 = ContinuousClock.now
    let client = PeerID([1])

    private func session(_ sequence: SequenceID, maxTokens: Int = 8) throws -> GenerationSession {
        try GenerationSession(sequence: sequence, prompt: [10, 11, 12], parameters: SamplingParameters(temperature: 0, maxTokens: maxTokens),
                              tokenizer: try Self.tokenizer.get(), contextLimit: 256)
    }

    /// A table with one accepted job from `owner`; returns its id.
    private func accepted(_ table: inout JobTable, owner: String = "", peer: PeerID? = nil) throws -> JobID {
        let intake = table.intake(countingJobsOf: owner.isEmpty ? nil : owner)
        let id = JobID.random()
        table.accept(id, clientRequestID: "r-\(intake.sequence.rawValue)", session: try session(intake.sequence), promptTokens: 3,
                     submittedMs: 5, owner: owner, peer: peer ?? client, now: t0)
        return id
    }

    /// A serving table with one job of `owner`, running on lane 0: the table, the job, its session.
    private func oneOnALane(owner: String = "", file: StaticString = #filePath, line: UInt = #line) throws
        -> (JobTable, JobID, GenerationSession) {
        var table = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 10)
        let id = try accepted(&table, owner: owner)
        _ = table.serve(epoch: 1)
        XCTAssertEqual(table.requestRoom(id), .start, file: file, line: line)
        let session = try XCTUnwrap(table.moveToLane(id, epoch: 1, lane: 0), file: file, line: line)
        return (table, id, session)
    }

    /// A serving table with KV room for one job: the first of two accepted jobs has it, the second
    /// waits first in line.
    private func oneStartedOneWaiting(file: StaticString = #filePath, line: UInt = #line) throws -> (JobTable, JobID, JobID) {
        var table = JobTable(contextTokens: 64, batchSequences: 1, keptEndedJobs: 10)
        let first = try accepted(&table)
        let second = try accepted(&table)
        _ = table.serve(epoch: 1)
        XCTAssertEqual(table.requestRoom(first), .start, file: file, line: line)
        XCTAssertEqual(table.requestRoom(second), .queued(position: 1), file: file, line: line)
        return (table, first, second)
    }

    private func state(_ table: JobTable, _ id: JobID) -> JobState? { table.status(of: id, mayTouch: { _ in true })?.state }

    func testAJobGoesFromQueuedThroughPrefillAndGeneratingToFinished() throws {
        var table = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 10)
        let id = try accepted(&table)
        XCTAssertEqual(state(table, id), .queued)
        XCTAssertEqual(table.takeEvents().map(\.event), [.accepted(job: id, promptTokens: 3, queuePosition: 0)])
        XCTAssertNil(table.moveToLane(id, epoch: 1, lane: 0), "no pipeline serves")
        XCTAssertEqual(table.serve(epoch: 1), [id], "the parked job moves onto the new pipeline")
        XCTAssertEqual(table.requestRoom(id), .start)
        XCTAssertNotNil(table.moveToLane(id, epoch: 1, lane: 2))
        XCTAssertEqual(state(table, id), .prefill)
        XCTAssertEqual(table.runningLane(of: id)?.lane, 2)
        let sequence = try XCTUnwrap(table.jobs[id]?.sequence)
        XCTAssertEqual(table.job(of: sequence), id)
        XCTAssertEqual(table.recordToken(id, token: 65, text: "A", now: t0 + .milliseconds(30)) { _ in "" },
                       .first(latency: .milliseconds(30), promptTokens: 3))
        XCTAssertEqual(table.recordToken(id, token: 66, text: "B", now: t0 + .milliseconds(40)) { _ in "" },
                       .next(latency: .milliseconds(10)))
        XCTAssertEqual(state(table, id), .generating)
        let finish = try XCTUnwrap(table.finish(id, reason: .endOfGeneration, text: "!", now: t0 + .milliseconds(50)))
        XCTAssertEqual(finish, .finished(JobFinish(reason: .endOfSequence, text: "!", promptTokens: 3, completionTokens: 2,
                                                   timeToFirstToken: .milliseconds(30), total: .milliseconds(50))))
        XCTAssertTrue(table.end(id, with: finish).ended)
        XCTAssertFalse(table.end(id, with: .failed(JobFailure(.internal, "again"))).ended, "a job ends once")
        XCTAssertEqual(state(table, id), .finished)
        XCTAssertNil(table.job(of: sequence), "an ended job holds no sequence")
        let events = table.takeEvents()
        XCTAssertEqual(events.map(\.sequence), [2, 3, 4], "numbered after the accepted event")
        XCTAssertEqual(events.map(\.event), [.token(JobToken(id: 65, text: "A")), .token(JobToken(id: 66, text: "B")), finish])
        XCTAssertTrue(events.allSatisfy { $0.peer == client && $0.job == id && $0.clientRequestID == "r-1" })
        XCTAssertTrue(table.takeEvents().isEmpty, "taken once")
    }

    func testACancelledFinishCancelsAndAFailureFailsWithItsMessage() throws {
        var table = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 10)
        let cancelled = try accepted(&table)
        let failed = try accepted(&table)
        XCTAssertTrue(table.end(cancelled, with: .finished(JobFinish(reason: .cancelled))).ended)
        XCTAssertTrue(table.end(failed, with: .failed(JobFailure(.unavailable, "no pipeline"))).ended)
        XCTAssertEqual(state(table, cancelled), .cancelled)
        let status = try XCTUnwrap(table.status(of: failed, mayTouch: { _ in true }))
        XCTAssertEqual(status.state, .failed)
        XCTAssertEqual(status.failure, JobFailure(.internal, "no pipeline"), "a status reports the message")
        XCTAssertEqual(table.bySequence.count, 0)
        XCTAssertFalse(table.end(failed, with: .token(JobToken(id: 1, text: ""))).ended, "a token ends nothing")
    }

    /// A job handed back by the pipeline it runs on reports a fault once; it is replayed (and
    /// counted) on the next pipeline only.
    func testHandBacksReportAFaultOnceAndReplaysAreCounted() throws {
        let (start, id, session) = try oneOnALane()
        var table = start
        XCTAssertEqual(table.handBack(id, session: session, reason: "step failed", now: t0), .fault(epoch: 1))
        XCTAssertEqual(state(table, id), .queued, "a parked job reports queued")
        XCTAssertEqual(table.status(of: id, mayTouch: { _ in true })?.waitingReason, "step failed")
        XCTAssertNotNil(table.moveToLane(id, epoch: 1, lane: 0))
        XCTAssertEqual(table.handBack(id, session: session, reason: "step failed", now: t0), .wait, "one fault per epoch")
        XCTAssertEqual(table.jobs[id]?.replays, 0, "not yet replayed")
        table.stopServing("re-planning")
        XCTAssertEqual(table.unavailable, "re-planning")
        XCTAssertNil(table.moveToLane(id, epoch: 1, lane: 0), "the old pipeline no longer serves")
        XCTAssertEqual(table.serve(epoch: 2), [id])
        XCTAssertEqual(table.requestRoom(id), .start, "it keeps its room")
        XCTAssertNotNil(table.moveToLane(id, epoch: 2, lane: 1))
        XCTAssertEqual(table.jobs[id]?.replays, 1)
        XCTAssertEqual(table.status(of: id, mayTouch: { _ in true })?.planEpoch, 2)
        // Handed back by a pipeline that is no longer the serving one: straight onto the new one.
        _ = table.serve(epoch: 3)
        XCTAssertEqual(table.handBack(id, session: session, reason: "stopped", now: t0), .dispatch)
        XCTAssertEqual(table.jobs[id]?.failuresWithoutProgress, 3)
        XCTAssertEqual(table.recordToken(id, token: 1, text: "x", now: t0) { _ in "" }, .first(latency: .zero, promptTokens: 3))
        XCTAssertEqual(table.jobs[id]?.failuresWithoutProgress, 0, "progress resets the count")
    }

    /// Cancelling a job while it is between pipelines claims its session: a dispatch racing with
    /// the cancel can no longer put it on a lane.
    func testCancelDuringReDispatchClaimsTheParkedSession() throws {
        let (start, id, session) = try oneOnALane(owner: "alice")
        var table = start
        XCTAssertEqual(table.handBack(id, session: session, reason: "step failed", now: t0), .fault(epoch: 1))
        guard case .notYours = table.cancelTarget(id, mayTouch: { $0 == "bob" }) else { return XCTFail("another key's job") }
        _ = table.serve(epoch: 2)
        guard case .parked(let claimed) = table.cancelTarget(id, mayTouch: { $0 == "alice" }) else { return XCTFail("parked") }
        XCTAssertTrue(claimed === session)
        XCTAssertNil(table.moveToLane(id, epoch: 2, lane: 0), "the claimed session cannot be dispatched")
        XCTAssertNil(table.claimParked(id), "claimed once")
        XCTAssertTrue(table.end(id, with: .finished(JobFinish(reason: .cancelled))).ended)
        guard case .nothing = table.cancelTarget(id, mayTouch: { _ in true }) else { return XCTFail("ended: nothing to cancel") }
    }

    /// A cancel asked for while the job is on a lane is kept in the job: when the lane hands the
    /// session back instead of cancelling it (its step failed, or it was stopping), the job is not
    /// parked for the next pipeline but ended; a cancel while the session is on its way between a
    /// lane and the desk is recorded the same way, and a session that reached a lane after it
    /// must leave it again. (Before, the hand back parked the job and the next pipeline ran it to
    /// its end: a cancelled job came back to life.)
    func testACancelWhileOnALaneOrOnItsWayEndsTheJobAtItsHandBack() throws {
        let (start, id, session) = try oneOnALane()
        var table = start
        XCTAssertFalse(table.mustLeaveLane(id))
        guard case .lane(0, session.sequence) = table.cancelTarget(id, mayTouch: { _ in true }) else { return XCTFail("on its lane") }
        guard case .pending = table.cancelTarget(id, mayTouch: { _ in true }) else { return XCTFail("asked again: under way") }
        XCTAssertTrue(table.mustLeaveLane(id), "a session that reaches its lane after the cancel leaves it")
        _ = table.serve(epoch: 2)
        XCTAssertEqual(table.handBack(id, session: session, reason: "re-plan", now: t0), .cancel)
        XCTAssertEqual(table.serve(epoch: 3), [], "nothing to replay")
        XCTAssertNil(table.moveToLane(id, epoch: 3, lane: 0))
        // Cancelled while its hand back is on its way (the lane no longer has it, the desk not yet).
        let other = try accepted(&table)
        XCTAssertEqual(table.requestRoom(other), .start)
        let otherSession = try XCTUnwrap(table.moveToLane(other, epoch: 3, lane: 1))
        table.stopServing("re-plan")
        guard case .pending = table.cancelTarget(other, mayTouch: { _ in true }) else { return XCTFail("on its way back") }
        XCTAssertEqual(table.handBack(other, session: otherSession, reason: "re-plan", now: t0), .cancel)
        XCTAssertEqual(table.serve(epoch: 4), [])
    }

    /// A job that ends from outside its lane (it timed out) while the lane holds its session keeps
    /// its KV room until the lane lets go of the sequence; the next job starts only then. Tokens
    /// the lane still reports for it are not recorded or sent.
    func testAJobEndedWhileOnALaneKeepsItsRoomUntilTheLaneLetsGo() throws {
        let (start, first, second) = try oneStartedOneWaiting()
        var table = start
        let session = try XCTUnwrap(table.moveToLane(first, epoch: 1, lane: 0))
        _ = table.takeEvents()
        let ended = table.end(first, with: .failed(JobFailure(.unavailable, "timed out")), whileOnLane: true)
        XCTAssertEqual(ended.ended, true)
        XCTAssertEqual(ended.admitted, [], "the lane still holds the sequence")
        XCTAssertTrue(table.mustLeaveLane(first))
        XCTAssertNil(table.recordToken(first, token: 1, text: "x", now: t0) { _ in "" }, "no token after the end")
        XCTAssertEqual(table.takeEvents().map(\.event), [.failed(JobFailure(.unavailable, "timed out"))])
        XCTAssertNil(table.laneReleased(SequenceID(99)), "another sequence frees nothing")
        let released = try XCTUnwrap(table.laneReleased(session.sequence))
        XCTAssertEqual(released.admitted, [second], "the lane let go: the room goes on")
        XCTAssertEqual(released.epoch, 1)
        XCTAssertNil(table.laneReleased(session.sequence), "once")
        XCTAssertEqual(table.admission.reserved[second.rawValue], 64)
        // A parked job that times out frees its room at once.
        XCTAssertTrue(table.end(second, with: .failed(JobFailure(.unavailable, "timed out")), whileOnLane: true).ended)
        XCTAssertEqual(table.admission.inUse, 0)
    }

    func testUnknownIDsChangeNothing() throws {
        var table = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 10)
        _ = try accepted(&table)
        _ = table.takeEvents()
        let before = table.jobs.count
        let unknown = JobID.random()
        XCTAssertNil(table.status(of: unknown, mayTouch: { _ in true }))
        XCTAssertFalse(table.attach(unknown, peer: client, receivedTokens: 0, mayTouch: { _ in true }))
        XCTAssertNil(table.requestRoom(unknown))
        XCTAssertNil(table.moveToLane(unknown, epoch: 0, lane: 0))
        XCTAssertNil(table.recordToken(unknown, token: 1, text: "", now: t0) { _ in "" })
        XCTAssertNil(table.finish(unknown, reason: .length, text: "", now: t0))
        XCTAssertEqual(table.end(unknown, with: .failed(JobFailure(.internal, "x"))).ended, false)
        XCTAssertEqual(table.handBack(unknown, session: try session(SequenceID(99)), reason: "", now: t0), .wait)
        guard case .nothing = table.cancelTarget(unknown, mayTouch: { _ in true }) else { return XCTFail() }
        XCTAssertNil(table.runningLane(of: unknown))
        XCTAssertEqual(table.jobs.count, before)
        XCTAssertTrue(table.takeEvents().isEmpty)
    }

    /// An attaching client gets the accepted event, the tokens it missed and the end, numbered on.
    func testAttachSendsWhatTheClientMissed() throws {
        var table = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 10)
        let id = try accepted(&table, owner: "alice")
        for (i, text) in ["a", "b", "c"].enumerated() { _ = table.recordToken(id, token: Int32(i), text: text, now: t0) { _ in "" } }
        XCTAssertTrue(table.end(id, with: .finished(JobFinish(reason: .length))).ended)
        _ = table.takeEvents()
        let other = PeerID([2])
        XCTAssertFalse(table.attach(id, peer: other, receivedTokens: 0, mayTouch: { $0 == "bob" }))
        XCTAssertTrue(table.attach(id, peer: other, receivedTokens: 1, mayTouch: { $0 == "alice" }))
        let events = table.takeEvents()
        XCTAssertEqual(events.map(\.event), [.accepted(job: id, promptTokens: 3, queuePosition: 0), .token(JobToken(id: 1, text: "b")),
                                             .token(JobToken(id: 2, text: "c")), .finished(JobFinish(reason: .length))])
        XCTAssertEqual(events.map(\.sequence), [6, 7, 8, 9])
        XCTAssertTrue(events.allSatisfy { $0.peer == other })
    }

    /// Jobs wait in arrival order for KV room and start as it is freed; while waiting they say so.
    func testJobsWaitForKVRoomAndStartWhenAnotherEnds() throws {
        let (start, first, second) = try oneStartedOneWaiting()
        var table = start
        XCTAssertTrue(table.isWaitingForRoom(second))
        XCTAssertEqual(table.roomQueue, [second: 1])
        XCTAssertEqual(table.status(of: second, mayTouch: { _ in true })?.queuePosition, 1)
        XCTAssertTrue(table.status(of: second, mayTouch: { _ in true })?.waitingReason.hasPrefix("waiting for KV room") ?? false)
        XCTAssertEqual(table.end(first, with: .finished(JobFinish(reason: .length))).admitted, [second])
        XCTAssertFalse(table.isWaitingForRoom(second))
        XCTAssertEqual(table.requestRoom(second), .start, "its room is reserved")
    }

    func testQueueTimeoutAndForgettingOldEndedJobs() throws {
        var table = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 1)
        let waiting = try accepted(&table)
        XCTAssertEqual(table.expired(after: .seconds(10), now: t0 + .seconds(5)), [])
        XCTAssertEqual(table.expired(after: .seconds(10), now: t0 + .seconds(11)),
                       [JobTable.Expired(job: waiting, reason: table.unavailableReason, lane: nil, sequence: SequenceID(1))])
        let a = try accepted(&table)
        let b = try accepted(&table)
        XCTAssertTrue(table.end(a, with: .finished(JobFinish(reason: .length))).ended)
        XCTAssertTrue(table.end(b, with: .finished(JobFinish(reason: .length))).ended)
        XCTAssertNil(table.jobs[a], "beyond the kept ended jobs")
        XCTAssertNotNil(table.jobs[b])
        XCTAssertEqual(table.ended, [b])
    }

    func testIntakeNumbersSubmissionsAndCountsTheLoad() throws {
        var table = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 10)
        _ = try accepted(&table, owner: "alice")
        _ = try accepted(&table, owner: "bob")
        let intake = table.intake(countingJobsOf: "alice")
        XCTAssertEqual(intake, JobTable.Intake(sequence: SequenceID(3), admitting: true, unavailableReason: table.unavailableReason,
                                               unfinished: 2, ownUnfinished: 1))
        XCTAssertEqual(table.intake(countingJobsOf: nil).ownUnfinished, 0)
        table.stopAdmitting("shutting down")
        XCTAssertFalse(table.intake(countingJobsOf: nil).admitting)
        XCTAssertEqual(table.unavailable, "shutting down")
    }

    /// A restart: typed journal outcomes become the jobs' states and end events; unfinished jobs
    /// are parked with their tokens; sequences continue after the highest one.
    func testRestoreMapsTypedOutcomes() throws {
        func submitted(_ name: String, _ sequence: UInt64) -> JournalEntry {
            .submitted(JournalSubmission(job: JobID("job-\(name)")!, sequence: SequenceID(sequence), clientRequestID: name,
                                         prompt: [10, 11], maxTokens: 8, seed: 1, submittedMs: 0))
        }
        let id = { (name: String) in JobID("job-\(name)")! }
        let entries: [JournalEntry] = [
            .epoch(4), submitted("run", 3), .token(job: id("run"), id: 65, text: "A"),
            submitted("done", 1), .ended(job: id("done"), outcome: .finished(.stopString, text: "t")),
            submitted("gone", 2), .ended(job: id("gone"), outcome: .finished(.cancelled, text: "")),
            submitted("bad", 7), .ended(job: id("bad"), outcome: .failed(message: "boom")), .epoch(2),
        ]
        var table = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 10)
        let restored = table.restore(entries, now: t0) { sub, generated in
            let s = try? self.session(sub.sequence)
            s?.restore(generated: generated)
            return s
        }
        XCTAssertEqual(restored.epoch, 4)
        XCTAssertEqual(restored.unfinished, 1)
        XCTAssertEqual(restored.kept.count, entries.count - 1, "every entry but the lower epoch")
        XCTAssertEqual(state(table, id("run")), .queued, "parked")
        XCTAssertEqual(table.jobs[id("run")]?.state, .generating)
        XCTAssertEqual(table.jobs[id("run")]?.tokenIDs, [65])
        XCTAssertEqual(state(table, id("done")), .finished)
        XCTAssertEqual(table.jobs[id("done")]?.endEvent, .finished(JobFinish(reason: .stopString, text: "t", promptTokens: 2)))
        XCTAssertEqual(state(table, id("gone")), .cancelled)
        XCTAssertEqual(state(table, id("bad")), .failed)
        XCTAssertEqual(table.jobs[id("bad")]?.endEvent, .failed(JobFailure(.internal, "boom")))
        XCTAssertEqual(table.intake(countingJobsOf: nil).sequence, SequenceID(8))
        XCTAssertTrue(table.takeEvents().isEmpty, "no client is attached yet")
        // A job whose session cannot be made again is dropped, and so is its compacted history.
        var strict = JobTable(contextTokens: 256, batchSequences: 8, keptEndedJobs: 1)
        let dropped = strict.restore(entries, now: t0) { _, _ in nil }
        XCTAssertNil(strict.jobs[id("run")])
        XCTAssertEqual(dropped.kept, [.epoch(4), submitted("bad", 7), .ended(job: id("bad"), outcome: .failed(message: "boom"))],
                       "and only the last ended job is kept")
    }
}
