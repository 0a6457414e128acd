import CaravanCore
import CaravanTesting
import Foundation
import GGUF
import Inference
import Logging
import Tokenizer
import XCTest
@testable import Coordinator

/// The job desk with real lanes on real in-process pipelines, at the moments a job's session is
/// between a lane and the desk: a cancel that meets a failing step or a hand back, and a job that
/// times out while a lane holds it. Stages are held still with the hub's pause, so each moment is
/// reached deterministically.
final class JobDeskRaceTests: XCTestCase {
    static let model = Result { try TinyModel().write() }

    /// Every event the desk queued for clients, by job.
    private final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var events: [JobID: [JobEventMessage]] = [:]
        func append(_ m: JobEventMessage) { lock.withLock { events[m.job, default: []].append(m) } }
        func of(_ job: JobID) -> [JobEventMessage] { lock.withLock { events[job] ?? [] } }
    }

    private struct Setup {
        let desk: JobDesk
        let collected: Collected
        let reader: Task<Void, Never>
    }

    private func makeDesk(contextLimit: Int = 256, batchSequences: Int = 8, queueTimeout: Duration = .seconds(30)) throws -> Setup {
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: try Self.model.get()))
        let logger = Logger(label: "desk") { _ in SwiftLogNoOpLogHandler() }
        let outbox = ClientOutbox(limit: 10_000, logger: logger)
        let desk = JobDesk(tokenizer: tokenizer, template: nil, contextLimit: contextLimit, logger: logger,
                           journal: InMemoryJobJournal(),
                           policy: JobDeskPolicy(queueTimeout: queueTimeout, batchSequences: batchSequences), outbox: outbox)
        let collected = Collected()
        let reader = Task {
            for await (_, reply, _) in outbox.messages {
                outbox.sent()
                if case .event(let m) = reply { collected.append(m) }
            }
        }
        return Setup(desk: desk, collected: collected, reader: reader)
    }

    private func submit(_ desk: JobDesk, _ prompt: String, tokens: Int) async throws -> JobID {
        let request = JobRequest(input: .tokens(Array(prompt.utf8).map(Int32.init)), clientRequestID: prompt,
                                 sampling: SamplingParameters(temperature: 0), maxTokens: tokens, seed: 1)
        guard case .accepted(let id) = await desk.submit(request, from: PeerID([1]), caller: .plain) else {
            throw Failed("\(prompt) was refused")
        }
        return id
    }

    private struct Failed: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    private func waitUntil(_ what: String, within: Duration = .seconds(20), _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + within
        while !(await condition()) {
            guard ContinuousClock.now < deadline else { throw Failed("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    private func pipeline(_ p: InProcessPipeline, desk: JobDesk, lanes count: Int = 1) -> ServingPipeline {
        let lanes = (0..<count).map { i in
            Lane(index: i, engine: p.engine, maxBatchRows: 64, sink: { s, e in await desk.laneEvent(s, e) })
        }
        return ServingPipeline(epoch: p.engine.planEpoch, engine: p.engine, lanes: lanes)
    }

    private func record(_ desk: JobDesk, _ id: JobID) -> JobRecord? { desk.records.first { $0.jobID == id } }

    /// Checks a job's stream: accepted first, exactly one end, last, and nothing after it.
    private func assertOneEnd(_ events: [JobEventMessage], _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(events.map(\.sequence), Array(1...UInt64(max(1, events.count))), "\(name): numbered in order", file: file, line: line)
        XCTAssertEqual(events.filter(\.event.isEnd).count, 1, "\(name): one end", file: file, line: line)
        XCTAssertTrue(events.last?.event.isEnd ?? false, "\(name): nothing after its end", file: file, line: line)
    }

    private static func isCancelled(_ events: [JobEventMessage]) -> Bool {
        if case .finished(let f)? = events.last?.event { return f.reason == .cancelled }
        return false
    }

    /// A cancel that reaches the lane while its step is in flight, when that step then fails (the
    /// lane hands the session back without applying the cancel), and a cancel that comes while the
    /// lane is handing its sessions back (no lane holds the session, the desk does not have it
    /// yet): both jobs end cancelled, exactly once, and are not replayed on the next pipeline;
    /// the third job replays there and gives the single-process tokens.
    func testACancelRacingAFailedStepOrAHandBackEndsTheJobInsteadOfReplayingIt() async throws {
        let path = try Self.model.get()
        let setup = try makeDesk()
        defer { setup.reader.cancel() }
        let desk = setup.desk
        let a = try await submit(desk, "camels", tokens: 30)
        let c = try await submit(desk, "oasis", tokens: 12)
        let b = try await submit(desk, "dunes", tokens: 30)
        let first = try await InProcessPipeline(modelPath: path, boundaries: [2], epoch: 1)
        let second = try await InProcessPipeline(modelPath: path, boundaries: [3], epoch: 2)
        // The control plane follows the desk's faults and re-plans; here the follower cancels B
        // at the first fault, while the lane may still be handing its sessions back one by one.
        let faults = LockedValue<[UInt64]>([])
        let cancelB = LockedValue<CancelAnswerBox?>(nil)
        let follower = Task {
            for await fault in desk.pipelineFaults {
                faults.withLock { $0.append(fault.epoch) }
                if cancelB.withLock({ $0 == nil }) {
                    let answer = await desk.cancel(b, caller: .plain)
                    cancelB.withLock { $0 = CancelAnswerBox(answer: answer) }
                }
            }
        }
        defer { follower.cancel() }
        let one = pipeline(first, desk: desk)
        first.hub.pause("worker-1")
        let served = await desk.startServing(one, stillCurrent: { true })
        XCTAssertTrue(served)
        let lane1 = Task { await one.lanes[0].run() }
        try await waitUntil("the first step to be on its way") { first.hub.delivered(from: "coordinator", to: "worker-1") >= 1 }
        // A's cancel is queued on the lane (its step is in flight); then the step fails.
        let cancelA = await desk.cancel(a, caller: .plain)
        XCTAssertEqual(cancelA, .cancelling)
        first.engine.failAll(PipelineError.stageFailed(step: 1, message: "a stage died"))
        try await waitUntil("every hand back") { desk.records.allSatisfy { $0.lane == nil } && cancelB.withLock { $0 != nil } }
        XCTAssertEqual(faults.withLock { $0 }, [1])
        XCTAssertEqual(cancelB.withLock { $0?.answer }, .cancelling)
        // The re-plan: the next pipeline serves; only C may run on it.
        await desk.stopServing("re-plan")
        lane1.cancel()
        await lane1.value
        let two = pipeline(second, desk: desk)
        _ = await desk.startServing(two, stillCurrent: { true })
        let lane2 = Task { await two.lanes[0].run() }
        try await waitUntil("C to finish") { setup.collected.of(c).last?.event.isEnd == true }
        try await waitUntil("A and B to end") { setup.collected.of(a).last?.event.isEnd == true && setup.collected.of(b).last?.event.isEnd == true }
        for (job, name) in [(a, "A"), (b, "B")] {
            let events = setup.collected.of(job)
            assertOneEnd(events, name)
            XCTAssertTrue(Self.isCancelled(events), "\(name) ends cancelled: \(events.map(\.event))")
            XCTAssertEqual(record(desk, job)?.state, .cancelled, name)
            XCTAssertEqual(record(desk, job)?.replays, 0, "\(name) was not replayed")
        }
        assertOneEnd(setup.collected.of(c), "C")
        let expected = try await SingleProcessReference.generate(
            modelPath: path, prompts: [Array("oasis".utf8).map(Int32.init)], parameters: SamplingParameters(temperature: 0, maxTokens: 12))
        XCTAssertEqual(record(desk, c)?.tokenIDs, expected[0], "C replayed to the single-process tokens")
        XCTAssertEqual(record(desk, c)?.replays, 1)
        let load = await two.lanes[0].load
        XCTAssertEqual(load, 0, "no session is left on the lane")
        XCTAssertEqual(desk.kvRoom.inUse, 0, "every job's room is free")
        XCTAssertEqual(desk.activeJobs, 0)
        lane2.cancel()
        await lane2.value
        await first.close()
        await second.close()
    }

    /// A job that times out while its lane's step is in flight ends at once for its client, but
    /// keeps its KV room until the lane has cancelled it (and released its sequence on the
    /// stages): the job waiting for that room starts only then, and runs to its end.
    func testATimedOutJobOnALaneKeepsItsRoomUntilTheLaneLetsGoOfIt() async throws {
        let path = try Self.model.get()
        // Room for one job of this size: 128 positions, each job reserves 2 x (6 + 40) = 92.
        let setup = try makeDesk(contextLimit: 128, batchSequences: 1, queueTimeout: .milliseconds(100))
        defer { setup.reader.cancel() }
        let desk = setup.desk
        let first = try await InProcessPipeline(modelPath: path, boundaries: [2], epoch: 1)
        let second = try await InProcessPipeline(modelPath: path, boundaries: [2], epoch: 2)
        let one = pipeline(first, desk: desk)
        first.hub.pause("worker-1")
        _ = await desk.startServing(one, stillCurrent: { true })
        let a = try await submit(desk, "camels", tokens: 40)
        let b = try await submit(desk, "oasis!", tokens: 40)
        XCTAssertEqual(desk.adminSnapshot().queued[b], 1, "B waits for A's room")
        let lane1 = Task { await one.lanes[0].run() }
        try await waitUntil("A's step to be on its way") { first.hub.delivered(from: "coordinator", to: "worker-1") >= 1 }
        // The pipeline goes (A is handed back and stalls), the next one takes A and holds its step.
        await desk.stopServing("re-plan")
        await lane1.value
        try await waitUntil("A's hand back") { record(desk, a)?.lane == nil }
        second.hub.pause("worker-1")
        let two = pipeline(second, desk: desk)
        _ = await desk.startServing(two, stillCurrent: { true })
        let lane2 = Task { await two.lanes[0].run() }
        try await waitUntil("A's step on the new pipeline") { second.hub.delivered(from: "coordinator", to: "worker-1") >= 1 }
        try await Task.sleep(for: .milliseconds(150))
        await desk.sweep()
        try await waitUntil("A's end to reach its client") { setup.collected.of(a).last?.event.isEnd == true }
        let aEvents = setup.collected.of(a)
        guard case .failed(let failure)? = aEvents.last?.event else { return XCTFail("A times out: \(aEvents.map(\.event))") }
        XCTAssertEqual(failure.reason, .unavailable)
        XCTAssertEqual(desk.adminSnapshot().queued[b], 1, "B still waits: A's sequence is still on the stages")
        XCTAssertEqual(desk.kvRoom.inUse, 92, "A's room is held until its lane lets go of it")
        // The stage goes on: the lane applies the cancel at the step's end, releases A's sequence,
        // and B starts in the room.
        second.hub.resume("worker-1")
        try await waitUntil("B to finish") { setup.collected.of(b).last?.event.isEnd == true }
        assertOneEnd(setup.collected.of(a), "A")
        assertOneEnd(setup.collected.of(b), "B")
        XCTAssertEqual(setup.collected.of(b).filter { if case .token = $0.event { true } else { false } }.count, 40)
        let expected = try await SingleProcessReference.generate(
            modelPath: path, prompts: [Array("oasis!".utf8).map(Int32.init)], parameters: SamplingParameters(temperature: 0, maxTokens: 40))
        XCTAssertEqual(record(desk, b)?.tokenIDs, expected[0])
        XCTAssertEqual(desk.kvRoom.inUse, 0)
        let load = await two.lanes[0].load
        XCTAssertEqual(load, 0)
        lane2.cancel()
        await lane2.value
        await first.close()
        await second.close()
    }
}

/// A cancel answer carried out of a closure.
private struct CancelAnswerBox: Sendable {
    let answer: JobDesk.CancelAnswer
}
