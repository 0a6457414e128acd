import CaravanCore
import CaravanTesting
import Coordinator
import GGUF
import Inference
import Tokenizer
import XCTest

/// A lane stepping the real pipeline (two ``StageRuntime``s on the in-memory transport): its
/// sessions' events, cancellation, and sessions handed back when it stops.
final class LaneTests: XCTestCase {
    static let model = Result { try TinyModel().write() }

    /// The events a lane reports, in order.
    private final class Events: @unchecked Sendable {
        private let lock = NSLock()
        private var all: [(SequenceID, LaneEvent)] = []
        func append(_ e: (SequenceID, LaneEvent)) { lock.withLock { all.append(e) } }
        var snapshot: [(SequenceID, LaneEvent)] { lock.withLock { all } }

        /// Waits until `condition` holds (polled), at most 10 s.
        func wait(_ what: String, until condition: ([(SequenceID, LaneEvent)]) -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(10)
            while !condition(snapshot) {
                guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
                try await Task.sleep(for: .milliseconds(2))
            }
        }
    }

    private struct TimedOut: Error {
        let what: String
    }

    private func session(_ id: UInt64, _ text: String, tokens: Int, tokenizer: Tokenizer) throws -> GenerationSession {
        try GenerationSession(sequence: SequenceID(id), prompt: Array(text.utf8).map(Int32.init),
                              parameters: SamplingParameters(temperature: 0, maxTokens: tokens), tokenizer: tokenizer,
                              contextLimit: 256)
    }

    private static func finished(_ events: [(SequenceID, LaneEvent)], _ id: UInt64) -> Bool {
        events.contains { seq, e in
            if seq.rawValue == id, case .generation(.finished) = e { return true }
            return false
        }
    }

    func testALaneRunsItsSessionsToTheSingleProcessTokensAndCancels() async throws {
        let path = try Self.model.get()
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: path))
        let pipeline = try await InProcessPipeline(modelPath: path, boundaries: [3])
        let events = Events()
        let lane = Lane(index: 0, engine: pipeline.engine, maxBatchRows: 64, sink: { s, e in events.append((s, e)) })
        let running = Task { await lane.run() }
        let a = try session(1, "camels", tokens: 20, tokenizer: tokenizer)
        let b = try session(2, "humps", tokens: 20, tokenizer: tokenizer)
        let long = try session(3, "water", tokens: 200, tokenizer: tokenizer)
        await lane.submit(a)
        await lane.submit(b)
        await lane.submit(long)
        try await events.wait("two sessions to finish") { Self.finished($0, 1) && Self.finished($0, 2) }
        let expected = try await SingleProcessReference.generate(
            modelPath: path, prompts: ["camels", "humps"].map { Array($0.utf8).map(Int32.init) },
            parameters: SamplingParameters(temperature: 0, maxTokens: 20))
        XCTAssertEqual(Array(a.generatedTokens), expected[0])
        XCTAssertEqual(Array(b.generatedTokens), expected[1])
        let tokenEvents = events.snapshot.filter { seq, e in
            if seq.rawValue == 1, case .generation(.token) = e { return true }
            return false
        }
        XCTAssertEqual(tokenEvents.count, 20, "one event per token (then the finish)")
        let cancelled = await lane.cancel(SequenceID(3))
        XCTAssertTrue(cancelled)
        let cancelledAgain = await lane.cancel(SequenceID(1))
        XCTAssertFalse(cancelledAgain, "a finished session is no longer the lane's")
        try await events.wait("the cancelled session to finish") { Self.finished($0, 3) }
        XCTAssertLessThan(long.generatedCount, 200)
        let load = await lane.load
        XCTAssertEqual(load, 0)
        running.cancel()
        await running.value
        await pipeline.close()
    }

    func testAStoppedLaneHandsBackItsUnfinishedSessionsWithTheirTokens() async throws {
        let path = try Self.model.get()
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: path))
        let pipeline = try await InProcessPipeline(modelPath: path, boundaries: [2, 4])
        let events = Events()
        let lane = Lane(index: 1, engine: pipeline.engine, maxBatchRows: 64, sink: { s, e in events.append((s, e)) })
        let running = Task { await lane.run() }
        let s = try session(1, "oasis", tokens: 200, tokenizer: tokenizer)
        await lane.submit(s)
        try await events.wait("a few tokens") { $0.count >= 5 }
        await lane.stop("re-plan")
        await running.value
        let handedBack = events.snapshot.compactMap { seq, e -> (GenerationSession, String)? in
            if case .handedBack(let session, let reason) = e { return (session, reason) }
            return nil
        }
        XCTAssertEqual(handedBack.count, 1)
        XCTAssertTrue(handedBack.first?.0 === s)
        XCTAssertEqual(handedBack.first?.1, "re-plan")
        XCTAssertGreaterThanOrEqual(s.generatedCount, 5, "the session keeps what it generated")
        XCTAssertFalse(s.isFinished)
        // A session submitted to a stopped lane comes straight back.
        let late = try session(2, "dune", tokens: 4, tokenizer: tokenizer)
        await lane.submit(late)
        XCTAssertTrue(events.snapshot.contains { seq, e in
            if seq.rawValue == 2, case .handedBack = e { return true }
            return false
        })
        await pipeline.close()
    }
}
