import CaravanCore
import CaravanWire
import Llama
import Logging

/// Work redone by replays after re-plans, summed over a coordinator's pipelines.
public struct ReplayTotals: Sendable, Equatable {
    /// Layer-positions the stages recomputed for replayed rows (as their results reported).
    public var recomputed: UInt64 = 0
    /// Layer-positions a full replay (every layer for every replayed row) would have computed.
    public var full: UInt64 = 0
    /// Replayed rows: positions below their sequence's committed count when the plan changed.
    public var positions: UInt64 = 0
    /// Committed positions not replayed at all: every stage held them in all its layers, so the
    /// sequence resumed after them.
    public var resumed: UInt64 = 0

    /// Nothing replayed yet.
    public init() {}
}

/// The replay on one pipeline after a re-plan, as the coordinator sees it: which sequences went
/// on with how many committed positions (``StageAssignment/continuing``), and, per step, the
/// layer-positions the stages recomputed for rows below those counts against the layer-positions
/// a full replay would have cost. Logs each replaying step and adds into `totals`.
public final class ReplayLedger: Sendable {
    private let epoch: UInt64
    private let layerCount: Int
    private let logger: Logger
    /// Per sequence still to be replayed: its committed positions and where it resumes.
    private let windows: LockedValue<[SequenceID: (committed: Int, resume: Int)]>
    private let totals: LockedValue<ReplayTotals>

    /// A ledger for the pipeline of `epoch` whose sequences continue with `continuing` committed
    /// positions, those of `resume` from the position every stage holds (``ResumePoints``), on
    /// a model of `layerCount` layers.
    init(epoch: UInt64, continuing: [SequenceID: Int], resume: [SequenceID: Int] = [:], layerCount: Int, logger: Logger,
         totals: LockedValue<ReplayTotals>) {
        self.epoch = epoch
        self.layerCount = layerCount
        self.logger = logger
        self.windows = LockedValue(continuing.filter { $0.value > 0 }.reduce(into: [:]) { w, e in
            w[e.key] = (e.value, min(e.value, resume[e.key] ?? 0))
        })
        self.totals = totals
    }

    /// Whether any continuing sequence is still to be replayed.
    var isPending: Bool { windows.withLock { !$0.isEmpty } }

    /// A step of `batch` came back with `recomputed` layer-positions reported by the stages.
    /// The first step of a sequence that resumed after held positions counts those as skipped
    /// (a full replay would have computed them).
    func record(step: UInt64, batch: StageBatch, recomputed: UInt64) {
        let (positions, resumed, ended) = windows.withLock { w -> (Int, Int, Int) in
            guard !w.isEmpty else { return (0, 0, 0) }
            var count = 0
            var resumed = 0
            var last: [SequenceID: Int] = [:]
            for e in batch.entries {
                guard let window = w[e.sequence] else { continue }
                if e.position < window.committed { count += 1 }
                last[e.sequence] = max(last[e.sequence] ?? 0, e.position + 1)
            }
            for id in last.keys {
                resumed += w[id]!.resume
                w[id]!.resume = 0
            }
            let ended = last.filter { $0.value >= w[$0.key]!.committed }.keys
            for id in ended { w[id] = nil }
            return (count, resumed, ended.count)
        }
        guard positions > 0 || recomputed > 0 || resumed > 0 || ended > 0 else { return }
        let full = UInt64(positions + resumed) * UInt64(layerCount)
        totals.withLock {
            $0.recomputed += recomputed
            $0.full += full
            $0.positions += UInt64(positions)
            $0.resumed += UInt64(resumed)
        }
        logger.info("replay: \(recomputed) layer-positions recomputed (full replay would be \(full))", metadata: [
            "epoch": "\(epoch)", "step": "\(step)", "replayed_positions": "\(positions)", "resumed_after": "\(resumed)",
        ])
    }
}
