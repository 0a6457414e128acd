import CaravanCore
import CaravanTesting
import CaravanTransport
import CaravanWire
import Fingerprint
import GGUF
import Llama
import Logging
import Worker
import XCTest
import ZeroMQ

/// The worker's data plane on the in-memory transport: a step in, the stage's output out to the
/// next hop or the result endpoint, failures reported, bad input dropped.
final class StageRuntimeTests: XCTestCase {
    static let model = Result { try TinyModel().write() }
    let codec = WireCodec()

    private func assignment(_ layers: LayerRange, next: String, epoch: UInt64 = 1) throws -> StageAssignment {
        let fingerprint = try ModelFingerprint.of(path: try Self.model.get())
        let last = layers.end == TinyModel().layers
        return StageAssignment(
            planEpoch: epoch, modelName: fingerprint.name, modelSHA256: fingerprint.sha256, modelSize: fingerprint.size,
            modelLayerCount: TinyModel().layers, layers: layers, stageIndex: layers.start == 0 ? 0 : 1, stageCount: 2,
            nextHop: next, resultAddress: last ? next : "mem://coordinator/results", activationDType: .f32,
            maxContextTokens: 64, maxBatchSequences: 4, maxBatchTokens: 64)
    }

    private func runtime(_ hub: InMemoryHub) -> StageRuntime {
        StageRuntime(dialer: hub.dialer(node: "worker"), codec: codec, threads: 1, sendTimeout: .seconds(2),
                     logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    }

    private func tokens(_ ids: [Int32], sequence: UInt64 = 1) -> StageBatch {
        StageBatch(entries: ids.enumerated().map { i, t in
            StageEntry(sequence: SequenceID(sequence), position: i, token: t, wantsLogits: i == ids.count - 1)
        })
    }

    /// What a stage of `layers` computes for `batch` in this process.
    private func direct(_ layers: LayerRange, _ batch: StageBatch) throws -> StageOutput {
        let stage = try LlamaStage(file: try GGUFFile(path: try Self.model.get()), layers: layers, contextLimit: 64,
                                   runner: ComputeThreadPool(threads: 1))
        return try stage.forward(batch)
    }

    func testAFirstStageConnectsAtItsFirstStepAndForwardsTheStagesActivations() async throws {
        let hub = InMemoryHub()
        let next = try hub.bind("mem://next/data", node: "next")
        let results = try hub.bind("mem://coordinator/results", node: "coordinator")
        let runtime = runtime(hub)
        let layers = LayerRange(0, 3)!
        _ = try await runtime.load(try assignment(layers, next: "mem://next/data"), path: try Self.model.get())
        XCTAssertEqual(hub.delivered(from: "worker", to: "next"), 0)
        let batch = tokens([72, 105, 33, 10])
        await runtime.handle(frames: try codec.encode(ActivationStep(tokens: batch, pipelineLabel: "epoch-1", planEpoch: 1, stepID: 7)))
        let message = try await next.receive(within: .seconds(5))
        guard case .activation(let step, _) = try codec.decode(message.frames) else { return XCTFail("not an activation") }
        XCTAssertEqual(step.stepID, 7)
        XCTAssertEqual(step.rows.count, 4)
        let hidden = try StageBatch(step: step, embedsTokens: false, hiddenWidth: TinyModel().embedding).hidden
        guard case .hidden(let expected, _, _) = try direct(layers, batch) else { return XCTFail("the stage made no activations") }
        XCTAssertEqual(hidden, expected, "the activations the stage computes, bit for bit (F32 on the wire)")
        let steps = await runtime.stepsRun
        XCTAssertEqual(steps, 1)
        XCTAssertEqual(hub.delivered(from: "worker", to: "coordinator"), 0, "nothing to report")
        await runtime.shutdown()
        await results.close()
    }

    func testTheLastStageSendsItsLogitsToTheResultEndpoint() async throws {
        let hub = InMemoryHub()
        let results = try hub.bind("mem://coordinator/results", node: "coordinator")
        let runtime = runtime(hub)
        let layers = LayerRange(0, TinyModel().layers)!
        _ = try await runtime.load(try assignment(layers, next: "mem://coordinator/results"), path: try Self.model.get())
        let batch = tokens([99, 97, 114])
        await runtime.handle(frames: try codec.encode(ActivationStep(tokens: batch, pipelineLabel: "epoch-1", planEpoch: 1, stepID: 3)))
        let message = try await results.receive(within: .seconds(5))
        guard case .stepResult(let outcome, _) = try codec.decode(message.frames) else { return XCTFail("not a step result") }
        XCTAssertNil(outcome.error)
        guard case .logits(let got, let rows, _) = try StageOutput(outcome: outcome, batch: batch, vocabulary: TinyModel.vocabularySize),
              case .logits(let expected, let expectedRows, _) = try direct(layers, batch) else { return XCTFail("no logits") }
        XCTAssertEqual(rows, expectedRows)
        XCTAssertEqual(got, expected)
        await runtime.shutdown()
    }

    func testBadInputIsDroppedAndAStepOfAnotherEpochIsReportedAndTheRuntimeGoesOn() async throws {
        let hub = InMemoryHub()
        let results = try hub.bind("mem://coordinator/results", node: "coordinator")
        let runtime = runtime(hub)
        // Before any assignment: dropped.
        await runtime.handle(frames: try codec.encode(ActivationStep(tokens: tokens([1]), pipelineLabel: "e", planEpoch: 1, stepID: 1)))
        _ = try await runtime.load(try assignment(LayerRange(0, TinyModel().layers)!, next: "mem://coordinator/results", epoch: 4),
                                   path: try Self.model.get())
        // Not a message: dropped, nothing sent.
        await runtime.handle(frames: [Message([0xFF, 0x00, 0x13])])
        XCTAssertEqual(hub.delivered(from: "worker", to: "coordinator"), 0)
        // Another epoch: reported as the step's failure.
        await runtime.handle(frames: try codec.encode(ActivationStep(tokens: tokens([1]), pipelineLabel: "e", planEpoch: 3, stepID: 2)))
        let failure = try await results.receive(within: .seconds(5))
        guard case .stepResult(let outcome, _) = try codec.decode(failure.frames) else { return XCTFail("not a step result") }
        XCTAssertEqual(outcome.stepID, 2)
        XCTAssertTrue(outcome.error?.contains("epoch 4") == true, outcome.error ?? "no error")
        // A position beyond the context: the forward fails and is reported.
        var far = tokens([1])
        far.entries[0].position = 1000
        await runtime.handle(frames: try codec.encode(ActivationStep(tokens: far, pipelineLabel: "e", planEpoch: 4, stepID: 3)))
        guard case .stepResult(let tooFar, _) = try codec.decode(try await results.receive(within: .seconds(5)).frames) else {
            return XCTFail("not a step result")
        }
        XCTAssertEqual(tooFar.stepID, 3)
        XCTAssertNotNil(tooFar.error)
        // And a good step still runs.
        await runtime.handle(frames: try codec.encode(ActivationStep(tokens: tokens([1, 2]), pipelineLabel: "e", planEpoch: 4, stepID: 4)))
        guard case .stepResult(let good, _) = try codec.decode(try await results.receive(within: .seconds(5)).frames) else {
            return XCTFail("not a step result")
        }
        XCTAssertEqual(good.stepID, 4)
        XCTAssertNil(good.error)
        let steps = await runtime.stepsRun
        XCTAssertEqual(steps, 1)
        await runtime.shutdown()
    }

    /// A data peer that sends thousands of bad frames, non-activation messages and steps of
    /// another epoch (each answered with a failure) makes the worker write a bounded number of log
    /// lines; the runtime still answers every step. (Before, each wrote a line.)
    func testAFloodOfBadStepsWritesABoundedNumberOfLogLines() async throws {
        let hub = InMemoryHub(capacity: 10_000)
        let results = try hub.bind("mem://coordinator/results", node: "coordinator")
        let recorder = LogRecorder()
        let runtime = StageRuntime(dialer: hub.dialer(node: "worker"), codec: codec, threads: 1, sendTimeout: .seconds(2),
                                   logger: recorder.logger("worker"))
        _ = try await runtime.load(try assignment(LayerRange(0, TinyModel().layers)!, next: "mem://coordinator/results", epoch: 4),
                                   path: try Self.model.get())
        let before = recorder.text.split(separator: "\n").count
        let flood = 2_000
        let notAStep = try codec.encode(.jobCancel(.with { $0.jobID = "job-1" }))
        for i in 0..<flood {
            await runtime.handle(frames: [Message([0xFF, 0x00, UInt8(i & 0xFF)])], from: "hostile")
            await runtime.handle(frames: notAStep, from: "hostile")
            await runtime.handle(frames: try codec.encode(ActivationStep(tokens: tokens([1]), pipelineLabel: "e", planEpoch: 3,
                                                                         stepID: UInt64(i))), from: "hostile")
        }
        var answered = 0
        while answered < flood, (try? await results.receive(within: .seconds(5))) != nil { answered += 1 }
        XCTAssertEqual(answered, flood, "every step of another epoch is answered")
        let written = recorder.text.split(separator: "\n").count - before
        XCTAssertLessThanOrEqual(written, 3 * 20, "\(3 * flood) bad messages: \(written) lines\n\(recorder.text.prefix(2000))")
        XCTAssertTrue(recorder.contains("data socket: dropped a bad frame"))
        await runtime.shutdown()
    }
}
