import CaravanCore
import CaravanTransport
import CaravanWire
import Coordinator
import Llama
import XCTest
import ZeroMQ

/// The engine against a fake last stage on a real inproc socket pair: steps in flight at once are
/// matched to their results by id, a late result is dropped, a missing one times out, a stage
/// error surfaces.
final class RemotePipelineEngineTests: XCTestCase {
    func testStepsInFlightMatchTheirResultsAndDeadlinesHold() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context, name: "engine-test")
        defer { loop.shutdown() }
        let stage = try AsyncSocket(loop: loop, type: .router) { try $0.bind("inproc://first-stage") }
        let first = try AsyncSocket(loop: loop, type: .dealer) { try $0.connect("inproc://first-stage") }
        let codec = WireCodec()
        let released = LockedValue<[UInt64]>([])
        let engine = RemotePipelineEngine(firstStage: ZeroMQTransport(first, routed: false), planEpoch: 4, vocabularySize: 2, contextLimit: 64, codec: codec,
                                          deadline: .milliseconds(800), releaser: { ids in released.withLock { $0 += ids } })
        func batch(_ seq: UInt64) -> StageBatch {
            StageBatch(entries: [StageEntry(sequence: SequenceID(seq), position: 0, token: 1, wantsLogits: true)])
        }
        async let a = engine.forward(batch(1))
        async let b = engine.forward(batch(2))
        // Receive both steps, answer in reverse order.
        var steps: [ActivationStep] = []
        for _ in 0..<2 {
            let frames = try await stage.receive(timeout: .seconds(5))
            guard case .activation(let s, _) = try codec.decode(Array(frames.dropFirst())) else { return XCTFail() }
            XCTAssertEqual(s.planEpoch, 4)
            steps.append(s)
        }
        for s in steps.reversed() {
            let seq = Float(s.rows[0].sequenceID)
            XCTAssertTrue(engine.deliver(try s.outcome(logits: [seq, -seq], entryIndices: [0], vocabulary: 2, dtype: .f32)))
        }
        let (ra, rb) = try await (a, b)
        guard case .logits(let va, _, _) = ra, case .logits(let vb, _, _) = rb else { return XCTFail() }
        XCTAssertEqual(va, [1, -1])
        XCTAssertEqual(vb, [2, -2])
        XCTAssertFalse(engine.deliver(try steps[0].outcome(logits: [0, 0], entryIndices: [0], vocabulary: 2, dtype: .f32)),
                       "a second result for a finished step is dropped")

        // A stage error surfaces; an unanswered step times out.
        async let c = engine.forward(batch(3))
        let frames = try await stage.receive(timeout: .seconds(5))
        guard case .activation(let s, _) = try codec.decode(Array(frames.dropFirst())) else { return XCTFail() }
        var wrongEpoch = s.failure("boom")
        wrongEpoch.planEpoch = 5
        XCTAssertFalse(engine.deliver(wrongEpoch), "results of another epoch are dropped")
        XCTAssertTrue(engine.deliver(s.failure("KV cache full")))
        do {
            _ = try await c
            XCTFail("expected a stage failure")
        } catch let e as PipelineError {
            guard case .stageFailed(_, let message) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(message, "KV cache full")
        }
        let started = ContinuousClock.now
        do {
            _ = try await engine.forward(batch(4))
            XCTFail("expected a timeout")
        } catch let e as PipelineError {
            guard case .timeout = e else { return XCTFail("\(e)") }
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
        await engine.release(SequenceID(9))
        XCTAssertEqual(released.withLock { $0 }, [9])
    }
}
