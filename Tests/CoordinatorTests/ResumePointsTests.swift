import CaravanCore
import CaravanTesting
import CaravanWire
import Logging
import Planning
import XCTest
@testable import Coordinator

/// Where sequences resume after a re-plan (mirrored KV, issue 13): at the smallest count of
/// positions every stage of the new plan holds in all its layers; where the KV rows of each
/// stage's layers are mirrored; and what the replay ledger counts then.
final class ResumePointsTests: XCTestCase {
    let a = PeerID([0, 1]), b = PeerID([0, 2]), c = PeerID([0, 3])
    let s1 = SequenceID(1), s2 = SequenceID(2), s3 = SequenceID(3)

    func testASequenceResumesWhereEveryStageHoldsIt() {
        var points = ResumePoints()
        points.record([s1: 40, s2: 12, s3: 9], peer: a, epoch: 5)
        points.record([s1: 39, s2: 30], peer: b, epoch: 5)
        let continuing = [s1: 40, s2: 20, s3: 9]
        // s1: one stage lacks the last (uncommitted tail) position; s2: capped at the committed
        // count; s3: b holds nothing of it, so it is replayed from 0.
        XCTAssertEqual(points.resume(continuing, epoch: 5, peers: [a, b]), [s1: 39, s2: 12])
        // A stage that reported nothing (an older worker) holds nothing: every sequence replays.
        XCTAssertEqual(points.resume(continuing, epoch: 5, peers: [a, b, c]), [:])
        // Reports of another plan count for nothing.
        XCTAssertEqual(points.resume(continuing, epoch: 6, peers: [a, b]), [:])
        points.record([s1: 40], peer: a, epoch: 4)
        XCTAssertEqual(points.resume(continuing, epoch: 5, peers: [a, b]), [s1: 39, s2: 12], "an older epoch's report is ignored")
        points.record([s1: 40], peer: c, epoch: 6)
        XCTAssertEqual(points.resume(continuing, epoch: 6, peers: [a, c]), [:], "a newer epoch forgets the older reports")
    }

    func testEachStageMirrorsTheLayersItsNeighboursKeepCopiesOf() {
        // Three stages; the first keeps [4, 6) of the middle one, the last [6, 8) and [8, 12)'s
        // neighbour part; the middle one keeps [0, 2) of the first and [8, 10) of the last.
        let placement = StandbyPlacement(copies: [
            "w1": StandbyCopies(ranges: [LayerRange(4, 6)!], rangeBytes: [1]),
            "w2": StandbyCopies(ranges: [LayerRange(0, 2)!, LayerRange(8, 10)!], rangeBytes: [1, 1]),
            "w3": StandbyCopies(ranges: [LayerRange(6, 8)!], rangeBytes: [1]),
        ])
        let mirrors = ControlPlane.mirrors(placement, stages: [LayerRange(0, 4)!, LayerRange(4, 8)!, LayerRange(8, 12)!],
                                           workers: [("w1", "tcp://w1", "k1"), ("w2", "tcp://w2", "k2"), ("w3", "tcp://w3", "k3")])
        XCTAssertEqual(mirrors["w1"], [KVMirrorTarget(layers: LayerRange(0, 2)!, holderAddress: "tcp://w2", holderPublicKey: "k2", holderID: "w2")])
        XCTAssertEqual(mirrors["w2"], [
            KVMirrorTarget(layers: LayerRange(4, 6)!, holderAddress: "tcp://w1", holderPublicKey: "k1", holderID: "w1"),
            KVMirrorTarget(layers: LayerRange(6, 8)!, holderAddress: "tcp://w3", holderPublicKey: "k3", holderID: "w3"),
        ])
        XCTAssertEqual(mirrors["w3"], [KVMirrorTarget(layers: LayerRange(8, 10)!, holderAddress: "tcp://w2", holderPublicKey: "k2", holderID: "w2")])
    }

    func testTheLedgerCountsResumedPositionsAsNotReplayed() {
        let totals = LockedValue(ReplayTotals())
        let recorder = LogRecorder()
        let ledger = ReplayLedger(epoch: 7, continuing: [s1: 30, s2: 10], resume: [s1: 29], layerCount: 6,
                                  logger: recorder.logger("test"), totals: totals)
        // s1 resumes at 29 (one tail position replayed in 2 layers); s2 replays from 0.
        let batch = StageBatch(entries: (29..<30).map { StageEntry(sequence: self.s1, position: $0, token: 1, wantsLogits: $0 == 29) }
            + (0..<10).map { StageEntry(sequence: self.s2, position: $0, token: 1, wantsLogits: $0 == 9) })
        ledger.record(step: 1, batch: batch, recomputed: 2 + 6 * 10)
        XCTAssertFalse(ledger.isPending)
        let t = totals.withLock { $0 }
        XCTAssertEqual(t.positions, 11)
        XCTAssertEqual(t.resumed, 29)
        XCTAssertEqual(t.full, UInt64(11 + 29) * 6)
        XCTAssertEqual(t.recomputed, 62)
        // A sequence resumed at its committed count logs a replay of 0.
        let quiet = ReplayLedger(epoch: 8, continuing: [s3: 12], resume: [s3: 12], layerCount: 6,
                                 logger: recorder.logger("test"), totals: totals)
        quiet.record(step: 1, batch: StageBatch(entries: [StageEntry(sequence: s3, position: 12, token: 1, wantsLogits: true)]),
                     recomputed: 0)
        XCTAssertTrue(recorder.contains("replay: 0 layer-positions recomputed (full replay would be 72)"), recorder.text)
    }
}
