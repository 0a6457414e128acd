import CaravanCore
import Foundation
import GGUF
import TestSupport
import XCTest
@testable import Llama

/// A re-plan keeps what survivors computed: stages taking over a sequence keep the KV of the
/// layers they ran before (cut back to the committed positions) and the outputs they sent on, so
/// a replay recomputes only the layers that were lost, with the bits of a full replay.
final class ReplayTests: XCTestCase {
    static let layers = 6
    static let model = Result { try ReplayTests.writeModel() }

    /// A 6-layer random model (F32 weights: split stages give the single stage's bits).
    static func writeModel() throws -> String {
        var rng = SplitMix(seed: 1313)
        func random(_ n: Int, scale: Float = 0.3) -> [Float] { (0..<n).map { _ in Float.random(in: -scale...scale, using: &rng) } }
        func norm(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: 0.8...1.2, using: &rng) } }
        let d = 32, kvd = 16, ffn = 48, vocab = 40
        var b = GGUFBuilder()
        b.set("general.architecture", .string("llama"))
        b.setLlamaShape(layers: layers, context: 128, embedding: d, feedForward: ffn, heads: 4, kvHeads: 2)
        b.addF32("token_embd.weight", dims: [d, vocab], values: random(vocab * d, scale: 1))
        b.addF32("output_norm.weight", dims: [d], values: norm(d))
        b.addF32("output.weight", dims: [d, vocab], values: random(vocab * d))
        b.addLlamaBlocks(layers: layers, embedding: d, kvWidth: kvd, feedForward: ffn, norm: norm) { random($0) }
        return try b.write(name: "replay")
    }

    static let tokens: [Int32] = [3, 17, 22, 8, 0, 39, 21, 5, 5, 11, 30, 2, 7, 19] + (14..<80).map { Int32(($0 * 7 + 3) % 40) }

    func stage(_ start: Int, _ end: Int, keeping kept: LlamaStage? = nil) throws -> LlamaStage {
        try LlamaStage(file: GGUFFile(path: Self.model.get()), layers: LayerRange(start, end)!, contextLimit: 128, keeping: kept)
    }

    /// Rows `range` of `sequence` (tokens from ``tokens``); the last asks for logits unless the
    /// rows are a chunk of a longer replay (`logits` false).
    func rows(_ sequence: UInt64, _ range: Range<Int>, logits: Bool = true) -> [StageEntry] {
        range.map { p in
            StageEntry(sequence: SequenceID(sequence), position: p, token: Self.tokens[p], wantsLogits: logits && p == range.upperBound - 1)
        }
    }

    /// Runs `entries` through `stages` in order; returns the last stage's logits.
    func run(_ stages: [LlamaStage], _ entries: [StageEntry]) throws -> [Float] {
        var hidden: [Float]?
        for stage in stages {
            switch try stage.forward(StageBatch(entries: entries, hidden: hidden)) {
            case .hidden(let values, _, _): hidden = values
            case .logits(let values, _, _): return values
            case .sampled: XCTFail("no sampling requested")
            }
        }
        XCTFail("the last stage returned no logits")
        return []
    }

    /// Logits of a fault-free single stage for sequence 1 after positions `[0, end)`, one per
    /// step of `steps` (prefill of the first, then one decode step each).
    func reference(_ steps: [Range<Int>]) throws -> [[Float]] {
        let whole = try stage(0, Self.layers)
        return try steps.map { try run([whole], rows(1, $0)) }
    }

    /// Old plan [0, 2) [2, 4) [4, 6) prefills 10 positions of sequences 1 and 2; a step for
    /// position 10 reaches the first stage only (it did not complete everywhere).
    func oldPipeline() throws -> [LlamaStage] {
        let old = [try stage(0, 2), try stage(2, 4), try stage(4, 6)]
        for s in old { s.keptOutputLimit = 4 * 128 }
        _ = try run(old, rows(1, 0..<10) + rows(2, 0..<10))
        _ = try old[0].forward(StageBatch(entries: rows(1, 10..<11)))
        XCTAssertEqual(old[0].cachedLength(of: SequenceID(1)), 11)
        XCTAssertEqual(old[0].keptOutputLength(of: SequenceID(1)), 11)
        XCTAssertEqual(old[2].keptOutputLength(of: SequenceID(1)), 0, "a last stage keeps no outputs")
        return old
    }

    func testSurvivorsExtendingTheirRangesRecomputeOnlyTheLostLayers() throws {
        let old = try oldPipeline()
        // The middle stage is lost: the survivors take its layers, [0, 3) and [3, 6).
        let first = try stage(0, 3, keeping: old[0]), last = try stage(3, 6, keeping: old[2])
        let committed = [SequenceID(1): 10, SequenceID(2): 10]
        let a = first.continueSequences(committed, from: old[0])
        let b = last.continueSequences(committed, from: old[2])
        XCTAssertEqual(a.map(\.keptLayers), [LayerRange(0, 2), LayerRange(0, 2)])
        XCTAssertEqual(a.map(\.cutPositions), [1, 0], "sequence 1's uncommitted position 10 is cut")
        XCTAssertEqual(b.map(\.keptLayers), [LayerRange(4, 6), LayerRange(4, 6)])
        XCTAssertEqual(a.map(\.recompute) + b.map(\.recompute), [10, 10, 10, 10])
        XCTAssertNil(a[0].fallback)
        XCTAssertTrue(old[0].sequences.isEmpty, "the old stage gave everything up")

        // Sequence 1 replays [0, 11) in one step, sequence 2 in two chunks; then both decode.
        let expected = try reference([0..<11, 11..<12, 12..<13])
        XCTAssertEqual(try run([first, last], rows(1, 0..<11)), expected[0], "the replay's logits are the fault-free run's")
        _ = try run([first, last], rows(2, 0..<4, logits: false))
        XCTAssertEqual(first.resumedLength(of: SequenceID(2)), 10, "still resuming after a partial replay")
        _ = try run([first, last], rows(2, 4..<11))
        XCTAssertEqual(first.resumedLength(of: SequenceID(2)), 0)
        XCTAssertEqual(try run([first, last], rows(1, 11..<12)), expected[1])
        XCTAssertEqual(try run([first, last], rows(1, 12..<13)), expected[2], "the caches hold every layer")
        // Only the lost layers (2 and 3) times the committed positions of each sequence.
        XCTAssertEqual(first.replayedLayerPositions + last.replayedLayerPositions, 2 * 10 * 2)
        XCTAssertEqual(first.replayedLayerPositions, 1 * 10 * 2)

        // A full replay over fresh stages recomputes every layer.
        let fresh = [try stage(0, 3), try stage(3, 6)]
        for s in fresh { s.continueSequences(committed, from: nil) }
        XCTAssertEqual(try run(fresh, rows(1, 0..<11)), expected[0])
        XCTAssertEqual(fresh.reduce(0) { $0 + $1.replayedLayerPositions }, Self.layers * 10)
    }

    func testANewWorkerTakingTheLostRangeRecomputesOnlyThatRange() throws {
        let old = try oldPipeline()
        let committed = [SequenceID(1): 10]
        let replacement = try stage(2, 4)
        XCTAssertEqual(replacement.continueSequences(committed, from: nil).map(\.fallback), ["this worker did not run the sequence"])
        old[0].continueSequences(committed, from: old[0])
        old[2].continueSequences(committed, from: old[2])
        XCTAssertFalse(old[0].sequences.contains(SequenceID(2)), "a sequence that does not continue is forgotten")
        XCTAssertEqual(old[0].cachedLength(of: SequenceID(1)), 10, "cut back to the committed positions")
        let expected = try reference([0..<11, 11..<12])
        XCTAssertEqual(try run([old[0], replacement, old[2]], rows(1, 0..<11)), expected[0])
        XCTAssertEqual(try run([old[0], replacement, old[2]], rows(1, 11..<12)), expected[1])
        XCTAssertEqual(old[0].replayedLayerPositions, 0, "unchanged ranges forward what they kept")
        XCTAssertEqual(old[2].replayedLayerPositions, 0)
        XCTAssertEqual(replacement.replayedLayerPositions, 2 * 10)
    }

    func testKeptStateThatDoesNotFitFallsBackToAFullRecompute() throws {
        let old = try oldPipeline()
        let committed = [SequenceID(1): 10]
        // [2, 4) became [2, 3): its kept outputs are those after layer 3, this stage sends layer 2's.
        let moved = try stage(2, 3, keeping: old[1])
        let result = moved.continueSequences(committed, from: old[1])
        XCTAssertNil(result[0].keptLayers)
        XCTAssertEqual(result[0].fallback, "the kept outputs are those after layer 3, this stage needs those after layer 2")
        XCTAssertEqual(result[0].recompute, 1 * 10)
        // An unknown sequence is recomputed too.
        let unknown = try stage(0, 3, keeping: old[0]).continueSequences([SequenceID(9): 4], from: old[0])
        XCTAssertEqual(unknown.map(\.fallback), ["the old stage held no positions of it"])
        let head = try stage(0, 2), tail = try stage(3, 6)
        head.continueSequences(committed, from: nil)
        tail.continueSequences(committed, from: nil)
        let expected = try reference([0..<11])
        XCTAssertEqual(try run([head, moved, tail], rows(1, 0..<11)), expected[0])
        XCTAssertEqual(moved.replayedLayerPositions, 1 * 10)
    }

    func testAResumedSequenceKeepsItsKeptLayersWhenItsCacheGrows() throws {
        let old = [try stage(0, 2), try stage(2, 6)]
        _ = try run(old, rows(1, 0..<64))
        // Layer 2 moves to the first stage; the cache (64 positions) grows during the replay.
        let first = try stage(0, 3, keeping: old[0]), last = try stage(3, 6, keeping: old[1])
        XCTAssertEqual(first.continueSequences([SequenceID(1): 64], from: old[0]).map(\.keptLayers), [LayerRange(0, 2)])
        XCTAssertEqual(last.continueSequences([SequenceID(1): 64], from: old[1]).map(\.keptLayers), [LayerRange(3, 6)])
        XCTAssertEqual(try run([first, last], rows(1, 0..<66)), try reference([0..<66])[0])
        XCTAssertEqual(first.replayedLayerPositions + last.replayedLayerPositions, 64)
    }

    func testTruncateCutsTheCacheAndTheKeptOutputs() throws {
        let s = try stage(0, 3)
        guard case .hidden(let all, _, let width) = try s.forward(StageBatch(entries: rows(1, 0..<8))) else { return XCTFail() }
        s.truncateSequence(SequenceID(1), to: 5)
        XCTAssertEqual(s.cachedLength(of: SequenceID(1)), 5)
        XCTAssertEqual(s.keptOutputLength(of: SequenceID(1)), 5)
        // Positions 5..<8 again give the same bits: the cut positions were recomputed over the kept ones.
        guard case .hidden(let again, _, _) = try s.forward(StageBatch(entries: rows(1, 5..<8))) else { return XCTFail() }
        XCTAssertEqual(again, Array(all[(5 * width)...]))
        XCTAssertEqual(s.keptOutputLength(of: SequenceID(1)), 8)
    }

    func testKeptOutputsStayWithinTheirLimitAndKeepWhatTravelled() throws {
        let s = try stage(0, 3)
        s.outputPrecision = .f16
        s.keptOutputLimit = 2 * 64
        for id in 1...5 { _ = try s.forward(StageBatch(entries: rows(UInt64(id), 0..<10))) }
        let width = s.configuration.embeddingLength
        XCTAssertLessThanOrEqual(s.keptOutputBytes, s.keptOutputBudgetBytes)
        XCTAssertEqual(s.keptOutputBudgetBytes, 2 * 64 * width * 2)
        XCTAssertGreaterThan(s.keptOutputBytes, 0)
        XCTAssertEqual(s.keptOutputLength(of: SequenceID(5)), 10, "the newest sequence is kept")
        let kept = (1...5).filter { s.keptOutputLength(of: SequenceID(UInt64($0))) > 0 }
        XCTAssertLessThanOrEqual(kept.count, 2)
        // A last stage keeps nothing.
        let last = try stage(3, 6)
        XCTAssertEqual(last.keptOutputBudgetBytes, 0)
        // Kept rows are the F16 values the next stage read.
        let t = try stage(0, 3)
        t.outputPrecision = .f16
        guard case .hidden(let sent, _, _) = try t.forward(StageBatch(entries: rows(1, 0..<3))) else { return XCTFail() }
        var row = [Float](repeating: 0, count: width)
        row.withUnsafeMutableBufferPointer { t.kept.read(SequenceID(1), position: 2, into: $0.baseAddress!) }
        XCTAssertEqual(row, sent[(2 * width)...].map { Float(Float16($0)) })
    }
}
