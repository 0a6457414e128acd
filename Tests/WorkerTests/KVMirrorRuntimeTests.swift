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

/// Mirrored KV between two runtimes on the in-memory transport: the owner streams the KV rows of
/// the layers its neighbour keeps a standby copy of, after each step; the holder keeps them within
/// its bound, whoever sends, and its next stage reports the positions it then holds in every layer.
final class KVMirrorRuntimeTests: XCTestCase {
    static let model = Result { try TinyModel().write() }
    let codec = WireCodec()

    private func assignment(_ layers: LayerRange, epoch: UInt64, next: String) throws -> StageAssignment {
        let fingerprint = try ModelFingerprint.of(path: try Self.model.get())
        return StageAssignment(
            planEpoch: epoch, modelName: fingerprint.name, modelSHA256: fingerprint.sha256, modelSize: fingerprint.size,
            modelLayerCount: TinyModel().layers, layers: layers, stageIndex: layers.start == 0 ? 0 : 1, stageCount: 2,
            nextHop: next, resultAddress: "mem://coordinator/results", activationDType: .f32,
            maxContextTokens: 64, maxBatchSequences: 2, maxBatchTokens: 64)
    }

    private func standby(_ a: StageAssignment, ranges: [LayerRange], mirrors: [KVMirrorTarget] = []) -> StandbyAssignment {
        var s = StandbyAssignment(planEpoch: a.planEpoch, modelName: a.modelName, modelSHA256: a.modelSHA256, modelSize: a.modelSize,
                                  modelLayerCount: a.modelLayerCount, ranges: ranges)
        s.mirrors = mirrors
        return s
    }

    private func runtime(_ hub: InMemoryHub, node: String, mirrorRetry: Duration = .seconds(1),
                         flushInterval: Duration = .zero) -> StageRuntime {
        StageRuntime(dialer: hub.dialer(node: node), codec: codec, threads: 1, sendTimeout: .seconds(2),
                     logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, mirrorRetry: mirrorRetry,
                     mirrorFlushInterval: flushInterval)
    }

    private func tokens(_ count: Int, from start: Int = 0, sequence: UInt64 = 1) -> StageBatch {
        StageBatch(entries: (start..<(start + count)).map { p in
            StageEntry(sequence: SequenceID(sequence), position: p, token: Int32(40 + p), wantsLogits: p == start + count - 1)
        })
    }

    /// Hands every message the holder's data endpoint received so far to `holder`.
    private func deliver(_ inbox: InMemoryTransport, to holder: StageRuntime, expecting count: Int) async throws {
        for _ in 0..<count {
            let m = try await inbox.receive(within: .seconds(5))
            await holder.handle(frames: m.frames, from: "owner")
        }
    }

    func testTheOwnerStreamsItsRowsAndTheHoldersNextStageHoldsThem() async throws {
        // The owner runs [0, 3) and sends its steps to the holder, which runs [3, 6) and keeps a
        // standby copy of layer 2.
        let pair = try await mirroringPair(InMemoryHub(), owner: { self.runtime($0, node: "owner") })
        let (owner, holder, results, path) = (pair.owner, pair.holder, pair.results, pair.path)
        // A prefill of 5 positions, then one decode step: each an activation and a KVRows message.
        try await pair.step(tokens(5))
        try await pair.step(tokens(1, from: 5))
        try await deliver(pair.mirrorInbox, to: holder, expecting: 2)
        let kvd = TinyModel().kvHeads * (TinyModel().embedding / TinyModel().heads)
        let mirrored = await holder.mirroredBytes
        XCTAssertEqual(mirrored, 6 * 1 * kvd * 2 * 2, "6 positions of one layer, keys and values in F16")
        let budget = await holder.mirrorBudgetBytes
        XCTAssertEqual(budget, 64 * 2 * 1 * kvd * 2 * 2, "context x sequences x mirrored layers x row bytes")

        // The owner is lost; the holder's next stage takes layer 2 over: with the rows mirrored
        // and its own layers kept, it holds the 6 committed positions in every layer.
        var grown = try assignment(LayerRange(2, 6)!, epoch: 2, next: "mem://coordinator/results")
        grown.continuing = [SequenceID(1): 6]
        _ = try await holder.load(grown, path: path)
        let held = await holder.held
        XCTAssertEqual(held.epoch, 2)
        XCTAssertEqual(held.positions, [SequenceID(1): 6])
        let after = await holder.mirroredBytes
        XCTAssertEqual(after, 0, "the old plan's mirror is done with")

        // Position 6 on the new stage gives the logits of the whole model, bit for bit.
        let file = try GGUFFile(path: path)
        let head = try LlamaStage(file: file, layers: LayerRange(0, 2)!, contextLimit: 64)
        guard case .hidden(let hidden, _, _) = try head.forward(tokens(7)) else { return XCTFail("no hidden states") }
        let width = TinyModel().embedding
        let step = try ActivationStep(tokens: tokens(1, from: 6), pipelineLabel: "epoch-2", planEpoch: 2, stepID: 1)
            .forwarding(hidden: Array(hidden[(6 * width)...]), rows: 1, width: width, dtype: .f32)
        await holder.handle(frames: try codec.encode(step))
        guard case .stepResult(let outcome, _) = try codec.decode(try await results.receive(within: .seconds(5)).frames) else {
            return XCTFail("no result")
        }
        XCTAssertNil(outcome.error)
        let whole = try LlamaStage(file: file, layers: LayerRange(0, 6)!, contextLimit: 64)
        guard case .logits(let expected, _, _) = try whole.forward(tokens(7)) else { return XCTFail("no logits") }
        XCTAssertEqual(outcome.logits?.floats(), Array(expected.suffix(TinyModel.vocabularySize)), "the adopted rows are the owner's, so the logits are the whole model's")
        XCTAssertEqual(outcome.replayedLayerPositions, 0, "nothing recomputed")
        await owner.shutdown()
        await holder.shutdown()
    }

    func testAHolderKeepsNoMoreThanItsBoundWhoeverSendsAndDropsWhatIsReleased() async throws {
        let hub = InMemoryHub()
        let holder = runtime(hub, node: "holder")
        let plan = try assignment(LayerRange(3, 6)!, epoch: 1, next: "mem://coordinator/results")
        _ = try await holder.load(plan, path: try Self.model.get())
        await holder.mirror(standby(plan, ranges: [LayerRange(1, 3)!]))
        let kvd = TinyModel().kvHeads * (TinyModel().embedding / TinyModel().heads)
        func rows(_ id: UInt64, at position: Int, count: Int, epoch: UInt64 = 1, layers: LayerRange = LayerRange(1, 3)!) throws -> [Message] {
            let payload = Message([UInt8](repeating: 0x3c, count: layers.count * 2 * count * kvd * 2))
            return try codec.encode(KVRowsData(planEpoch: epoch, sequence: SequenceID(id), position: position, count: count,
                                               layers: layers, kvDimension: kvd, payload: payload))
        }
        let budget = await holder.mirrorBudgetBytes
        XCTAssertEqual(budget, 64 * 2 * 2 * kvd * 2 * 2)
        // A peer sending full contexts for ever more sequences: the mirror fills to its bound only.
        for id in 1...20 {
            for start in stride(from: 0, to: 64, by: 16) {
                await holder.handle(frames: try rows(UInt64(id), at: start, count: 16), from: "stranger")
                let held = await holder.mirroredBytes
                XCTAssertLessThanOrEqual(held, budget)
            }
        }
        var held = await holder.mirroredBytes
        XCTAssertEqual(held, budget)
        // Rows of another epoch or of layers not held here change nothing.
        var release = Caravan_V1_ReleaseSequences()
        release.planEpoch = 1
        release.sequenceIds = [1]
        await holder.handle(frames: try codec.encode(.releaseSequences(release)), from: "owner")
        held = await holder.mirroredBytes
        XCTAssertEqual(held, budget / 2, "the released sequence's rows are dropped")
        await holder.handle(frames: try rows(30, at: 0, count: 4, epoch: 2), from: "stranger")
        await holder.handle(frames: try rows(30, at: 0, count: 4, layers: LayerRange(3, 4)!), from: "stranger")
        held = await holder.mirroredBytes
        XCTAssertEqual(held, budget / 2)
        await holder.handle(frames: try rows(30, at: 0, count: 4), from: "owner")
        held = await holder.mirroredBytes
        XCTAssertEqual(held, budget / 2 + 4 * 2 * kvd * 2 * 2)
        await holder.shutdown()
    }

    /// An owner running layers [0, 3) that mirrors layer 2 to a holder running [3, 6), on `hub`:
    /// the holder's mirrored rows arrive in `mirrorInbox` (handed over with ``deliver``), `step`
    /// runs a batch through both stages.
    private struct MirroringPair {
        let owner: StageRuntime, holder: StageRuntime
        let mirrorInbox: InMemoryTransport
        /// Where the holder's stage sends its results.
        let results: InMemoryTransport
        let path: String
        let step: (StageBatch) async throws -> Void
    }

    private func mirroringPair(_ hub: InMemoryHub, owner makeOwner: (InMemoryHub) -> StageRuntime) async throws -> MirroringPair {
        let results = try hub.bind("mem://coordinator/results", node: "coordinator")
        let data = try hub.bind("mem://holder/data", node: "holder-inbox")
        let mirrorInbox = try hub.bind("mem://holder/mirror", node: "holder-mirror")
        let owner = makeOwner(hub), holder = runtime(hub, node: "holder")
        let path = try Self.model.get()
        let ownerPlan = try assignment(LayerRange(0, 3)!, epoch: 1, next: "mem://holder/data")
        let holderPlan = try assignment(LayerRange(3, 6)!, epoch: 1, next: "mem://coordinator/results")
        _ = try await owner.load(ownerPlan, path: path)
        _ = try await holder.load(holderPlan, path: path)
        await holder.mirror(standby(holderPlan, ranges: [LayerRange(2, 3)!]))
        let target = KVMirrorTarget(layers: LayerRange(2, 3)!, holderAddress: "mem://holder/mirror", holderPublicKey: "", holderID: "holder")
        await owner.mirror(standby(ownerPlan, ranges: [], mirrors: [target]))
        let steps = LockedValue<UInt64>(0)
        let codec = self.codec
        return MirroringPair(owner: owner, holder: holder, mirrorInbox: mirrorInbox, results: results, path: path) { batch in
            let id = steps.withLock { n in
                n += 1
                return n
            }
            await owner.handle(frames: try codec.encode(ActivationStep(tokens: batch, pipelineLabel: "epoch-1", planEpoch: 1, stepID: id)))
            try await self.deliver(data, to: holder, expecting: 1)  // the holder runs its own layers
            _ = try await results.receive(within: .seconds(5))
        }
    }

    /// A holder that stops taking rows for a moment (its queue full) breaks the link, and the
    /// owner does not wait on it; once the retry time has come, the owner sends it the releases
    /// it missed and every row the stage holds, and the holder's next stage holds every committed
    /// position again. Before, the link stayed broken for the rest of the plan and a loss then
    /// recomputed the lost layers.
    func testAHolderThatStalledIsMirroredToAgain() async throws {
        let pair = try await mirroringPair(InMemoryHub(capacity: 3), owner: { self.runtime($0, node: "owner", mirrorRetry: .milliseconds(200)) })
        let (owner, holder, mirrorInbox, path) = (pair.owner, pair.holder, pair.mirrorInbox, pair.path)
        let step = pair.step
        try await step(tokens(5, sequence: 1))
        try await step(tokens(3, sequence: 2))
        try await step(tokens(1, from: 5, sequence: 1))  // the holder's queue is full now
        let stalled = ContinuousClock.now
        try await step(tokens(1, from: 6, sequence: 1))  // its rows cannot go: the link breaks
        XCTAssertLessThan(ContinuousClock.now - stalled, .seconds(1), "the step did not wait on the holder")
        await owner.release([2], epoch: 1)
        try await deliver(mirrorInbox, to: holder, expecting: 3)
        let before = await holder.mirroredBytes
        let kvd = TinyModel().kvHeads * (TinyModel().embedding / TinyModel().heads)
        XCTAssertEqual(before, (6 + 3) * kvd * 2 * 2, "what came before the link broke")

        try await Task.sleep(for: .milliseconds(300))
        try await step(tokens(1, from: 7, sequence: 1))  // the retry: the missed release, then every row
        try await deliver(mirrorInbox, to: holder, expecting: 2)
        let after = await holder.mirroredBytes
        XCTAssertEqual(after, 8 * kvd * 2 * 2, "sequence 1's 8 positions; sequence 2 released")
        try await step(tokens(1, from: 8, sequence: 1))  // live again: just the new row
        try await deliver(mirrorInbox, to: holder, expecting: 1)

        var grown = try assignment(LayerRange(2, 6)!, epoch: 2, next: "mem://coordinator/results")
        grown.continuing = [SequenceID(1): 9]
        _ = try await holder.load(grown, path: path)
        let held = await holder.held
        XCTAssertEqual(held.positions, [SequenceID(1): 9], "the holder's new stage holds every committed position")
        await owner.shutdown()
        await holder.shutdown()
    }

    /// Rows go out at most every flush interval: steps in between send nothing, the next one after
    /// it sends each sequence's rows since the last send in one message, and the holder's mirror
    /// then holds every position.
    func testRowsGoOutOncePerIntervalWithEverythingSinceTheLast() async throws {
        let pair = try await mirroringPair(InMemoryHub(), owner: { self.runtime($0, node: "owner", flushInterval: .milliseconds(300)) })
        let (owner, holder, mirrorInbox, path) = (pair.owner, pair.holder, pair.mirrorInbox, pair.path)
        let step = pair.step
        let started = ContinuousClock.now
        try await step(tokens(5, sequence: 1))
        try await step(tokens(3, sequence: 2))
        try await step(tokens(1, from: 5, sequence: 1))
        try await step(tokens(1, from: 3, sequence: 2))
        try XCTSkipIf(ContinuousClock.now - started >= .milliseconds(300), "the steps took longer than the interval")
        let early = try? await mirrorInbox.receive(within: .milliseconds(50))
        XCTAssertNil(early, "nothing is sent within the interval")
        try await Task.sleep(for: .milliseconds(300))
        try await step(tokens(2, from: 6, sequence: 1))
        try await deliver(mirrorInbox, to: holder, expecting: 2)  // one message per sequence
        let kvd = TinyModel().kvHeads * (TinyModel().embedding / TinyModel().heads)
        let mirrored = await holder.mirroredBytes
        XCTAssertEqual(mirrored, (8 + 4) * kvd * 2 * 2, "sequence 1's 8 positions, sequence 2's 4")

        var grown = try assignment(LayerRange(2, 6)!, epoch: 2, next: "mem://coordinator/results")
        grown.continuing = [SequenceID(1): 8, SequenceID(2): 4]
        _ = try await holder.load(grown, path: path)
        let held = await holder.held
        XCTAssertEqual(held.positions, [SequenceID(1): 8, SequenceID(2): 4])
        await owner.shutdown()
        await holder.shutdown()
    }
}
