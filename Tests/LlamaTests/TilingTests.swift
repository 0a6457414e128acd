import CaravanCore
import GGUF
import TestSupport
import XCTest
@testable import Llama

/// A forward step works in tiles of rows (``LlamaStage/rowTile``) and shares each converted
/// key/value block among the queries of a run of rows (``LlamaStage/attentionRows``) and of a KV
/// head: none of it may change a bit of any row's logits, whatever the batch looks like.
final class TilingTests: XCTestCase {
    static let file: GGUFFile? = try? GGUFFile(path: TestModel.path)

    func model() throws -> GGUFFile {
        _ = try TestModel.requirePath()
        return try XCTUnwrap(Self.file)
    }

    func tokens(_ n: Int, seed: Int) -> [Int32] { (0..<n).map { Int32(($0 * 7919 + seed * 131 + 13) % 49_000) } }

    /// Logits of every row of `entries` (all want logits), in row order.
    func logits(_ stage: LlamaStage, _ entries: [StageEntry]) throws -> [[Float]] {
        guard case let .logits(values, idx, vocab) = try stage.forward(StageBatch(entries: entries)) else {
            XCTFail("no logits")
            return []
        }
        XCTAssertEqual(idx, Array(entries.indices))
        return entries.indices.map { Array(values[($0 * vocab)..<(($0 + 1) * vocab)]) }
    }

    /// A 150-row prompt in one batch (three tiles, runs cut inside and across tiles) against the
    /// same positions fed in batches of 1, 3 and 61 rows.
    func testOneLongBatchEqualsShortBatches() throws {
        let file = try model()
        let toks = tokens(150, seed: 1)
        let entries = toks.enumerated().map {
            StageEntry(sequence: SequenceID(1), position: $0.offset, token: $0.element, wantsLogits: true)
        }
        let stage = try LlamaStage(file: file, contextLimit: 160, runner: ComputeThreadPool(threads: 2))
        let whole = try logits(stage, entries)
        XCTAssertGreaterThan(LlamaStage.rowTile, LlamaStage.attentionRows)
        XCTAssertGreaterThan(entries.count, 2 * LlamaStage.rowTile)
        for size in [1, 3, 61] {
            stage.removeSequence(SequenceID(1))
            var parts: [[Float]] = []
            var lo = 0
            while lo < entries.count {
                let hi = min(entries.count, lo + size)
                parts += try logits(stage, Array(entries[lo..<hi]))
                lo = hi
            }
            for row in [0, 1, 4, 63, 64, 65, 127, 128, 149] {
                XCTAssertEqual(parts[row].map(\.bitPattern), whole[row].map(\.bitPattern), "row \(row), batches of \(size)")
            }
        }
    }

    /// Three sequences with rows interleaved in one batch (runs of one row), then in blocks (runs
    /// of several rows), against each sequence alone.
    func testInterleavedSequencesEqualSeparateRuns() throws {
        let file = try model()
        let lengths = [40, 9, 70]
        let seqs = lengths.enumerated().map { i, n in
            tokens(n, seed: i + 2).enumerated().map {
                StageEntry(sequence: SequenceID(UInt64(i)), position: $0.offset, token: $0.element, wantsLogits: true)
            }
        }
        let stage = try LlamaStage(file: file, contextLimit: 80, runner: ComputeThreadPool(threads: 2))
        let alone = try seqs.map { try logits(stage, $0) }
        seqs.indices.forEach { stage.removeSequence(SequenceID(UInt64($0))) }

        // Round-robin: row r of each sequence in turn.
        var mixed: [StageEntry] = []
        for r in 0..<lengths.max()! {
            for s in seqs where r < s.count { mixed.append(s[r]) }
        }
        let got = try logits(stage, mixed)
        for (row, e) in mixed.enumerated() where e.position % 7 == 0 || e.position == lengths[Int(e.sequence.rawValue)] - 1 {
            XCTAssertEqual(got[row].map(\.bitPattern), alone[Int(e.sequence.rawValue)][e.position].map(\.bitPattern),
                           "sequence \(e.sequence.rawValue) position \(e.position), round-robin")
        }
        seqs.indices.forEach { stage.removeSequence(SequenceID(UInt64($0))) }

        // Blocks of 5 rows of one sequence, then the next.
        var blocks: [StageEntry] = []
        for b in stride(from: 0, to: lengths.max()!, by: 5) {
            for s in seqs where b < s.count { blocks += s[b..<min(s.count, b + 5)] }
        }
        let got2 = try logits(stage, blocks)
        for (row, e) in blocks.enumerated() where e.position % 6 == 0 {
            XCTAssertEqual(got2[row].map(\.bitPattern), alone[Int(e.sequence.rawValue)][e.position].map(\.bitPattern),
                           "sequence \(e.sequence.rawValue) position \(e.position), blocks of 5")
        }
    }
}
