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

/// A stage's KV memory is bounded by its assignment whatever its peers send: steps beyond the
/// plan's rows or KV room are refused with a clear `StepResult` error and allocate nothing, room
/// released by the coordinator is reused, and a release still on its way is waited for.
final class StepLimitsTests: XCTestCase {
    static let model = Result { try TinyModel().write() }
    let codec = WireCodec()
    /// The plan of these tests: 64 positions x 4 sequences of KV room, 64 rows per step.
    let (context, sequences, rows) = (64, 4, 64)

    /// A runtime with the whole test model loaded; a step short of room waits `grace` for releases.
    private func setUp(_ hub: InMemoryHub, grace: Duration = .milliseconds(150)) async throws -> (StageRuntime, any Transport) {
        let results = try hub.bind("mem://coordinator/results", node: "coordinator")
        let fingerprint = try ModelFingerprint.of(path: try Self.model.get())
        let assignment = StageAssignment(
            planEpoch: 1, modelName: fingerprint.name, modelSHA256: fingerprint.sha256, modelSize: fingerprint.size,
            modelLayerCount: TinyModel().layers, layers: LayerRange(0, TinyModel().layers)!, stageIndex: 0, stageCount: 1,
            nextHop: "mem://coordinator/results", resultAddress: "mem://coordinator/results", activationDType: .f32,
            maxContextTokens: context, maxBatchSequences: sequences, maxBatchTokens: rows)
        let runtime = StageRuntime(dialer: hub.dialer(node: "worker"), codec: codec, threads: 1, sendTimeout: .seconds(2),
                                   logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
                                   releaseGrace: grace)
        _ = try await runtime.load(assignment, path: try Self.model.get())
        return (runtime, results)
    }

    /// A step of `count` rows from position 0 for each of `sequences`.
    private func step(_ id: UInt64, sequences ids: [UInt64], count: Int) throws -> [Message] {
        var entries: [StageEntry] = []
        for s in ids {
            for p in 0..<count {
                entries.append(StageEntry(sequence: SequenceID(s), position: p, token: Int32(1 + p % 50), wantsLogits: p == count - 1))
            }
        }
        return try codec.encode(ActivationStep(tokens: StageBatch(entries: entries), pipelineLabel: "epoch-1", planEpoch: 1, stepID: id))
    }

    private func outcome(_ results: any Transport) async throws -> StepOutcome {
        guard case .stepResult(let outcome, _) = try codec.decode(try await results.receive(within: .seconds(5)).frames) else {
            throw XCTSkip("not a step result")
        }
        return outcome
    }

    /// Bytes of KV the plan sized for the stage.
    private func budgetBytes() throws -> Int {
        let stage = try LlamaStage(file: try GGUFFile(path: try Self.model.get()), contextLimit: context)
        return stage.cacheBudgetBytes(sequences: sequences)
    }

    func testStepsOpeningTenTimesThePlansSequencesAreRefusedAndAllocateNothing() async throws {
        let hub = InMemoryHub()
        // No release comes here: each refused step waits out its grace, kept short.
        let (runtime, results) = try await setUp(hub, grace: .milliseconds(30))
        let budget = try budgetBytes()
        // 40 sequences (10x the plan's 4), each with 60 positions (nearly the context), two per step.
        var refused: [String] = []
        for i in 0..<20 {
            let first = UInt64(100 + 2 * i)
            await runtime.handle(frames: try step(UInt64(i + 1), sequences: [first, first + 1], count: 30), from: "peer-key")
            let result = try await outcome(results)
            XCTAssertEqual(result.stepID, UInt64(i + 1))
            if let error = result.error { refused.append(error) }
            let held = await runtime.kvCacheBytes
            XCTAssertLessThanOrEqual(held, budget, "after step \(i + 1) the stage holds \(held) bytes of KV; the plan sized \(budget)")
        }
        // Four sequences of 64 positions each fill the room: the first two steps run, 18 are refused.
        XCTAssertEqual(refused.count, 18)
        XCTAssertTrue(refused.allSatisfy { $0.contains("no KV room") && $0.contains("the plan sized 256 (context 64 x 4 sequences)") },
                      refused.first ?? "")
        let full = await runtime.kvCacheBytes
        XCTAssertEqual(full, budget)

        // Too many rows in one step: refused too, whatever the room.
        await runtime.release([100, 101, 102, 103], epoch: 1)
        await runtime.handle(frames: try step(50, sequences: [1], count: rows + 1))
        let tooMany = try await outcome(results)
        XCTAssertEqual(tooMany.error, "stage 0: the step has 65 rows; the plan allows 64 per step")

        // Released room is reused: a normal job's step runs again.
        await runtime.handle(frames: try step(51, sequences: [7], count: 12))
        let normal = try await outcome(results)
        XCTAssertNil(normal.error)
        XCTAssertEqual(normal.tokens.count + normal.logitsRows.count, 1)
        await runtime.shutdown()
        await results.close()
    }

    /// A release sent before a step but arriving after it (control and data are separate links):
    /// the step waits for it instead of being refused.
    func testAStepShortOfRoomWaitsForAReleaseOnItsWay() async throws {
        let hub = InMemoryHub()
        let (runtime, results) = try await setUp(hub)
        await runtime.handle(frames: try step(1, sequences: [1, 2], count: 32))
        await runtime.handle(frames: try step(2, sequences: [3, 4], count: 32))
        let filled = [try await outcome(results), try await outcome(results)]
        XCTAssertEqual(filled.compactMap(\.error), [])
        let late = Task {
            try await Task.sleep(for: .milliseconds(40))
            await runtime.release([1], epoch: 1)
        }
        await runtime.handle(frames: try step(3, sequences: [5], count: 10))
        let waited = try await outcome(results)
        XCTAssertNil(waited.error, "the step was refused although the room came within the grace")
        try await late.value
        await runtime.shutdown()
        await results.close()
    }
}
