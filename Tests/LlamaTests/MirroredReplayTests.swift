import CaravanCore
import XCTest
@testable import Llama

/// Mirrored KV (issue 13): the stage that is lost had streamed the keys and values of its layers
/// to the neighbours keeping standby copies of them; the survivors adopt those rows for the layers
/// they take over, so every layer of the new stages holds the committed positions and the
/// sequences resume there, with nothing recomputed and the bits of the fault-free run.
extension ReplayTests {
    /// A mirror of `layers` for the plan of epoch 1, filled with positions `[0, count)` of the
    /// sequences `ids` of `owner`, in chunks of 4 positions (as a prefill streams them).
    func mirror(of owner: LlamaStage, _ layers: LayerRange, sequences ids: [UInt64], count: Int) throws -> KVMirror {
        let m = KVMirror(epoch: 1, ranges: [layers], kvDimension: owner.kvDimension, contextLimit: 128, sequences: 4)
        for id in ids {
            for start in stride(from: 0, to: count, by: 4) {
                let n = min(4, count - start)
                var rows = [UInt8](repeating: 0, count: layers.count * 2 * n * owner.kvDimension * 2)
                let copied = rows.withUnsafeMutableBytes {
                    owner.copyKVRows(of: SequenceID(id), layers: layers, position: start, count: n, into: $0)
                }
                XCTAssertTrue(copied)
                try rows.withUnsafeBytes {
                    try m.accept(epoch: 1, sequence: SequenceID(id), position: start, count: n, layers: layers,
                                 kvDimension: owner.kvDimension, payload: $0)
                }
            }
        }
        return m
    }

    func testSurvivorsAdoptingMirroredRowsResumeWithNothingRecomputed() throws {
        let old = try oldPipeline()
        // The middle stage [2, 4) had mirrored layer 2 to the first worker, layer 3 to the last.
        let toFirst = try mirror(of: old[1], LayerRange(2, 3)!, sequences: [1, 2], count: 10)
        let toLast = try mirror(of: old[1], LayerRange(3, 4)!, sequences: [1, 2], count: 10)
        let first = try stage(0, 3, keeping: old[0]), last = try stage(3, 6, keeping: old[2])
        let committed = [SequenceID(1): 10, SequenceID(2): 10]
        let a = first.continueSequences(committed, from: old[0], mirror: toFirst)
        let b = last.continueSequences(committed, from: old[2], mirror: toLast)
        XCTAssertEqual(a.map(\.heldPositions) + b.map(\.heldPositions), [10, 10, 10, 10], "\(a) \(b)")
        XCTAssertEqual(a.map(\.mirroredLayers), [LayerRange(2, 3), LayerRange(2, 3)])
        XCTAssertEqual(b.map(\.mirroredLayers), [LayerRange(3, 4), LayerRange(3, 4)])
        XCTAssertEqual(a.map(\.keptLayers), [LayerRange(0, 2), LayerRange(0, 2)])
        XCTAssertNil(a[0].fallback)
        XCTAssertEqual(a[0].cutPositions, 1, "sequence 1's uncommitted position 10 is cut")

        // Both resume at position 10 (what every stage holds): the next rows are the newest token.
        let expected = try reference([0..<11, 11..<12])
        XCTAssertEqual(try run([first, last], rows(1, 10..<11)), expected[0], "the resumed logits are the fault-free run's")
        XCTAssertEqual(try run([first, last], rows(1, 11..<12)), expected[1])
        XCTAssertEqual(try run([first, last], rows(2, 10..<11)), expected[0])
        XCTAssertEqual(first.replayedLayerPositions + last.replayedLayerPositions, 0, "nothing recomputed")
    }

    func testAMirrorHoldingFewerPositionsResumesThereAndRecomputesOnlyTheTail() throws {
        let old = try oldPipeline()
        // The last rows of the lost stage never reached the first worker's mirror.
        let toFirst = try mirror(of: old[1], LayerRange(2, 3)!, sequences: [1], count: 6)
        let toLast = try mirror(of: old[1], LayerRange(3, 4)!, sequences: [1], count: 10)
        let first = try stage(0, 3, keeping: old[0]), last = try stage(3, 6, keeping: old[2])
        let committed = [SequenceID(1): 10]
        let a = first.continueSequences(committed, from: old[0], mirror: toFirst)
        let b = last.continueSequences(committed, from: old[2], mirror: toLast)
        XCTAssertEqual(a.map(\.heldPositions), [6])
        XCTAssertEqual(b.map(\.heldPositions), [10])
        // Resumed at 6 (the smallest count both hold): positions 6..<10 are replayed, and only in
        // the layers that were lost (the kept layers are skipped for them).
        let expected = try reference([0..<11])
        XCTAssertEqual(try run([first, last], rows(1, 6..<11)), expected[0])
        XCTAssertEqual(first.replayedLayerPositions + last.replayedLayerPositions, 2 * 4)
    }

    func testRowsOfAnotherLayerOrAKVWidthLeaveTheReplayAsItWas() throws {
        let old = try oldPipeline()
        // A mirror of layer 3 gives the first stage (which takes over layer 2) nothing.
        let wrong = try mirror(of: old[1], LayerRange(3, 4)!, sequences: [1], count: 10)
        let first = try stage(0, 3, keeping: old[0])
        let a = first.continueSequences([SequenceID(1): 10], from: old[0], mirror: wrong)
        XCTAssertEqual(a.map(\.heldPositions), [0])
        XCTAssertNil(a[0].mirroredLayers)
        XCTAssertEqual(a.map(\.keptLayers), [LayerRange(0, 2)], "the partial replay stays")
        let last = try stage(3, 6, keeping: old[2])
        last.continueSequences([SequenceID(1): 10], from: old[2])
        XCTAssertEqual(try run([first, last], rows(1, 0..<11)), try reference([0..<11])[0])
    }
}

/// The bound of a ``KVMirror``: whoever sends, it holds at most the plan's context x sequences x
/// mirrored layers positions, of its plan's epoch, of its layers, without gaps.
final class KVMirrorTests: XCTestCase {
    let kvd = 4

    func rows(_ layers: Int, _ count: Int, fill: UInt16 = 7) -> [UInt8] {
        let halfs = [UInt16](repeating: fill, count: layers * 2 * count * kvd)
        return halfs.withUnsafeBytes { Array($0) }
    }

    func accept(_ m: KVMirror, epoch: UInt64 = 3, _ id: UInt64, at position: Int, count: Int,
                layers: LayerRange = LayerRange(2, 4)!) throws {
        let payload = rows(layers.count, count)
        try payload.withUnsafeBytes { p in
            try m.accept(epoch: epoch, sequence: SequenceID(id), position: position, count: count, layers: layers,
                         kvDimension: kvd, payload: p)
        }
    }

    func refusal(_ body: () throws -> Void) -> KVMirrorRefusal? {
        do {
            try body()
            return nil
        } catch {
            return error as? KVMirrorRefusal
        }
    }

    func testRowsOutsideTheMirrorAreRefused() throws {
        let m = KVMirror(epoch: 3, ranges: [LayerRange(2, 4)!], kvDimension: kvd, contextLimit: 16, sequences: 2)
        XCTAssertEqual(m.limit, 16 * 2 * 2)
        XCTAssertEqual(refusal { try accept(m, epoch: 2, 1, at: 0, count: 4) }, .otherEpoch(2, mirror: 3))
        XCTAssertEqual(refusal { try accept(m, 1, at: 0, count: 4, layers: LayerRange(1, 3)!) }, .layersNotMirrored(LayerRange(1, 3)!))
        XCTAssertEqual(refusal { try accept(m, 1, at: 4, count: 4) }, .gap(layer: 2, position: 4, held: 0))
        XCTAssertEqual(refusal { try accept(m, 1, at: 14, count: 4) }, .beyondContext(end: 18, limit: 16))
        XCTAssertEqual(m.heldLayerPositions, 0)
        try accept(m, 1, at: 0, count: 4)
        try accept(m, 1, at: 4, count: 2)
        XCTAssertEqual(m.length(of: SequenceID(1), layer: 3), 6)
        // Rows from an earlier position replace what was held from there.
        try accept(m, 1, at: 2, count: 1)
        XCTAssertEqual(m.length(of: SequenceID(1), layer: 2), 3)
        XCTAssertEqual(m.heldLayerPositions, 6)
        m.release([SequenceID(1)])
        XCTAssertEqual(m.heldLayerPositions, 0)
        XCTAssertEqual(m.length(of: SequenceID(1), layer: 2), 0)
    }

    func testAPeerSendingWithoutEndCannotGrowTheMirrorBeyondItsBound() throws {
        let m = KVMirror(epoch: 3, ranges: [LayerRange(2, 4)!], kvDimension: kvd, contextLimit: 16, sequences: 2)
        var refused = 0
        // Many sequences, each filled to the context: far more than the plan's two.
        for id in 1...50 {
            for start in stride(from: 0, to: 16, by: 4) {
                if refusal({ try accept(m, UInt64(id), at: start, count: 4) }) != nil { refused += 1 }
                XCTAssertLessThanOrEqual(m.heldLayerPositions, m.limit)
            }
        }
        XCTAssertEqual(m.heldLayerPositions, m.limit, "filled to the bound, no further")
        XCTAssertEqual(m.byteCount, m.limit * kvd * 2 * 2)
        XCTAssertEqual(refused, 50 * 4 - m.limit / (2 * 4))
        XCTAssertEqual(refusal { try accept(m, 99, at: 0, count: 1) }, .full(limit: m.limit))
        // Released rows make room again.
        m.release([SequenceID(1)])
        try accept(m, 99, at: 0, count: 4)
    }
}
