import CaravanCore
import CaravanTransport
import CaravanWire
import Llama
import ZeroMQ

/// The KV rows a stage streams to the workers keeping standby copies of its layers (as the
/// owner), and the rows it keeps of its neighbours' layers (as a holder), see ``KVMirror``.
struct MirrorLinks {
    /// One holder: the layers mirrored there (within the stage) and the transport to it.
    struct Target {
        let target: KVMirrorTarget
        let layers: LayerRange
        let hop: NextHop
        /// Set after a failed send: the holder may lack rows (later ones would leave a gap it
        /// refuses), so nothing goes to it until then, when it gets every row the stage holds
        /// again (replacing what it has). A holder that stalled for a moment is mirrored to again
        /// instead of staying cold for the rest of the plan.
        var retryAt: ContinuousClock.Instant?
        /// The wait before the next retry: doubled after each failed one, up to
        /// ``StageRuntime/mirrorRetryLimit``.
        var retryDelay: Duration = .zero
        /// Sequences released while the link was broken: the holder drops them when it is
        /// mirrored to again. Nil once more than ``StageRuntime/mirrorReleasesKept`` were: the
        /// holder is then given up on for this plan (its mirror would fill with rows nobody
        /// releases).
        var releasedMeanwhile: Set<UInt64>? = []
        /// Per sequence, the positions sent to this holder: `[0, sent)`.
        var sent: [SequenceID: Int] = [:]

        /// Whether rows go to this holder now.
        var isLive: Bool { retryAt == nil && releasedMeanwhile != nil }
    }
    /// The plan the targets were placed for.
    let epoch: UInt64
    var targets: [Target]
    /// When the rows held were last sent.
    var lastFlush = ContinuousClock.now
}

extension StageRuntime {
    /// Bytes of KV rows mirrored here now (0 with no mirror).
    public var mirroredBytes: Int { mirrorStore?.byteCount ?? 0 }
    /// The most bytes the mirror here may hold (0 with no mirror).
    public var mirrorBudgetBytes: Int { mirrorStore.map { $0.limit * $0.kvDimension * 2 * 2 } ?? 0 }

    /// Most payload bytes of one `KVRows` message (a prefill is cut into several).
    static let mirrorMessageBytes = 1 << 20
    /// How long a mirror send may wait for queue room: a holder that does not take rows must
    /// never hold up the pipeline.
    static let mirrorSendTimeout: Duration = .milliseconds(100)
    /// The longest wait between retries of a holder that stopped taking rows (each retry may
    /// hold a step up by ``mirrorSendTimeout``).
    static let mirrorRetryLimit: Duration = .seconds(30)
    /// Releases remembered for a broken link (see ``MirrorLinks/Target/releasedMeanwhile``).
    static let mirrorReleasesKept = 4096

    /// Takes the mirror part of a standby assignment for the plan this worker runs: as a holder,
    /// keeps KV rows of its standby ranges from now on (a new, empty ``KVMirror`` unless the same
    /// one is sent again); as an owner, streams the rows of `assignment.mirrors` to their holders,
    /// starting with every position its stage holds. An assignment of another plan is ignored.
    public func mirror(_ assignment: StandbyAssignment) async {
        guard let installed, installed.assignment.planEpoch == assignment.planEpoch else {
            logger.debug("mirror: ignored a standby assignment of another plan", metadata: ["epoch": "\(assignment.planEpoch)"])
            return
        }
        let stage = installed.stage
        if assignment.ranges.isEmpty {
            mirrorStore = nil
        } else if mirrorStore?.epoch != assignment.planEpoch || mirrorStore?.ranges != assignment.ranges {
            mirrorStore = KVMirror(epoch: assignment.planEpoch, ranges: assignment.ranges, kvDimension: stage.kvDimension,
                                   contextLimit: installed.assignment.maxContextTokens,
                                   sequences: installed.assignment.maxBatchSequences)
        }
        let wanted = assignment.mirrors.compactMap { t -> (KVMirrorTarget, LayerRange)? in
            let lo = max(t.layers.start, stage.layers.start), hi = min(t.layers.end, stage.layers.end)
            return LayerRange(lo, hi).map { (t, $0) }
        }
        if let current = mirrorLinks, current.epoch == assignment.planEpoch,
           current.targets.map(\.target) == wanted.map(\.0) { return }
        await closeMirrorLinks()
        mirrorLinks = MirrorLinks(epoch: assignment.planEpoch, targets: wanted.map { t, layers in
            MirrorLinks.Target(target: t, layers: layers,
                               hop: NextHop(dialer: dialer, endpoint: t.holderAddress, serverKey: t.holderPublicKey, connected: nil))
        })
        guard !wanted.isEmpty else { return }
        logger.info("mirroring KV rows", metadata: [
            "epoch": "\(assignment.planEpoch)",
            "to": "\(wanted.map { "\($0.0.holderID)\($0.1)" }.joined(separator: " "))",
            "holds": "\(assignment.ranges.map(\.description).joined())",
        ])
        // What the stage holds already (jobs that started before the placement, sequences that
        // continued from the previous plan).
        for i in wanted.indices { await flushMirror(toTarget: i, stage: stage, epoch: assignment.planEpoch) }
    }

    /// Notes the rows `batch` wrote and, once ``mirrorFlushInterval`` has passed since the last
    /// time, sends every holder the rows it lacks; a holder whose link broke gets everything the
    /// stage holds once its retry time has come. Sending after every step cost a small model's
    /// stages a fifth of their throughput (a message per sequence, step and holder); a loss
    /// recomputes at most the rows of the last interval, as with a mirror that started late.
    func mirrorStep(_ batch: StageBatch, stage: LlamaStage, epoch: UInt64) async {
        guard let links = mirrorLinks, links.epoch == epoch else { return }
        // A step that rewrote positions a holder has (a replay) sends them again.
        var first: [SequenceID: Int] = [:]
        for e in batch.entries { first[e.sequence] = min(first[e.sequence] ?? e.position, e.position) }
        for i in links.targets.indices {
            for (id, from) in first {
                if let sent = mirrorLinks!.targets[i].sent[id], sent > from { mirrorLinks!.targets[i].sent[id] = from }
            }
        }
        let now = ContinuousClock.now
        guard now - links.lastFlush >= mirrorFlushInterval else { return }
        mirrorLinks!.lastFlush = now
        for (i, t) in links.targets.enumerated() {
            if t.isLive {
                await flushMirror(toTarget: i, stage: stage, epoch: epoch)
            } else if let retryAt = t.retryAt, t.releasedMeanwhile != nil, now >= retryAt {
                await resendMirror(toTarget: i, stage: stage, epoch: epoch)
            }
        }
    }

    /// Sends holder `i` the rows of every sequence of the stage beyond what it was sent; false
    /// when a send failed (the link is then broken).
    @discardableResult
    private func flushMirror(toTarget i: Int, stage: LlamaStage, epoch: UInt64) async -> Bool {
        for id in stage.sequences.sorted() {
            guard let links = mirrorLinks, links.epoch == epoch, i < links.targets.count else { return false }
            let from = links.targets[i].sent[id] ?? 0, to = stage.cachedLength(of: id)
            guard to > from else { continue }
            guard await sendMirrorRows(id, from: from, to: to, toTarget: i, stage: stage, epoch: epoch) else { return false }
            if mirrorLinks?.epoch == epoch { mirrorLinks!.targets[i].sent[id] = to }
        }
        return true
    }

    /// Sends a holder whose link broke every row the stage holds, after the releases it missed;
    /// the link is live again when all of it went.
    private func resendMirror(toTarget i: Int, stage: LlamaStage, epoch: UInt64) async {
        guard let t = mirrorLinks?.targets[i], let missed = t.releasedMeanwhile else { return }
        if !missed.isEmpty {
            do {
                let release = Caravan_V1_ReleaseSequences(epoch: epoch, sequences: missed.sorted())
                try await t.hop.send(try codec.encode(.releaseSequences(release)), timeout: Self.mirrorSendTimeout)
            } catch {
                return brokeMirror(i, epoch: epoch, reason: "\(error)")
            }
        }
        guard mirrorLinks?.epoch == epoch else { return }
        mirrorLinks!.targets[i].sent = [:]
        guard await flushMirror(toTarget: i, stage: stage, epoch: epoch), mirrorLinks?.epoch == epoch else { return }
        mirrorLinks!.targets[i].retryAt = nil
        mirrorLinks!.targets[i].retryDelay = .zero
        mirrorLinks!.targets[i].releasedMeanwhile = []
        logger.info("mirror: the holder takes rows again; sent it every row held", metadata: [
            "holder": "\(t.target.holderID)", "sequences": "\(stage.sequences.count)",
        ])
    }

    /// Sends positions `[from, to)` of `sequence` to holder `i`, in messages of at most
    /// ``mirrorMessageBytes``; returns false when a send failed (the link is then broken).
    private func sendMirrorRows(_ sequence: SequenceID, from: Int, to: Int, toTarget i: Int, stage: LlamaStage,
                                epoch: UInt64) async -> Bool {
        guard to > from, let links = mirrorLinks, links.epoch == epoch, i < links.targets.count else { return true }
        let t = links.targets[i]
        let rowBytes = t.layers.count * 2 * stage.kvDimension * 2
        let step = max(1, Self.mirrorMessageBytes / rowBytes)
        var position = from
        while position < to {
            let count = min(step, to - position)
            var copied = false
            let payload = Message(count: rowBytes * count) { out in
                copied = stage.copyKVRows(of: sequence, layers: t.layers, position: position, count: count, into: out)
            }
            guard copied else { break }
            let rows = KVRowsData(planEpoch: epoch, sequence: sequence, position: position, count: count, layers: t.layers,
                                  kvDimension: stage.kvDimension, payload: payload)
            do {
                try await t.hop.send(try codec.encode(rows), timeout: Self.mirrorSendTimeout)
                WorkerMetrics.mirrorBytesSent.increment(by: payload.count)
            } catch {
                brokeMirror(i, epoch: epoch, reason: "\(error)")
                return false
            }
            position += count
        }
        return true
    }

    /// Marks holder `i`'s link broken after a failed send: retried after a doubling wait.
    private func brokeMirror(_ i: Int, epoch: UInt64, reason: String) {
        guard mirrorLinks?.epoch == epoch, i < mirrorLinks!.targets.count else { return }
        var t = mirrorLinks!.targets[i]
        t.retryDelay = t.retryDelay == .zero ? mirrorRetry : min(t.retryDelay * 2, Self.mirrorRetryLimit)
        t.retryAt = ContinuousClock.now + t.retryDelay
        mirrorLinks!.targets[i] = t
        limited.warning("mirror: could not send KV rows; retrying this holder later", key: t.target.holderID, metadata: [
            "holder": "\(t.target.holderID)", "retry_in_ms": "\(t.retryDelay.wholeMilliseconds)",
            "reason": "\(reason)",
        ])
    }

    /// Tells every holder to drop `sequences` (the stage released them); a holder whose link is
    /// broken is told when it is mirrored to again.
    func releaseMirrored(_ sequences: [UInt64], epoch: UInt64) async {
        guard let links = mirrorLinks, links.epoch == epoch, !sequences.isEmpty else { return }
        guard let frames = try? codec.encode(.releaseSequences(Caravan_V1_ReleaseSequences(epoch: epoch, sequences: sequences))) else { return }
        for i in links.targets.indices {
            for id in sequences { mirrorLinks!.targets[i].sent[SequenceID(id)] = nil }
        }
        for (i, t) in links.targets.enumerated() {
            if t.isLive {
                do {
                    try await t.hop.send(frames, timeout: Self.mirrorSendTimeout)
                } catch {
                    brokeMirror(i, epoch: epoch, reason: "\(error)")
                    remember(released: sequences, target: i, epoch: epoch)
                }
            } else {
                remember(released: sequences, target: i, epoch: epoch)
            }
        }
    }

    /// Keeps `sequences` for holder `i` to drop when it is mirrored to again (within a bound).
    private func remember(released sequences: [UInt64], target i: Int, epoch: UInt64) {
        guard mirrorLinks?.epoch == epoch, i < mirrorLinks!.targets.count,
              var missed = mirrorLinks!.targets[i].releasedMeanwhile else { return }
        missed.formUnion(sequences)
        if missed.count > Self.mirrorReleasesKept {
            mirrorLinks!.targets[i].releasedMeanwhile = nil
            logger.warning("mirror: a holder missed too many releases; no more rows to it in this plan",
                           metadata: ["holder": "\(mirrorLinks!.targets[i].target.holderID)"])
        } else {
            mirrorLinks!.targets[i].releasedMeanwhile = missed
        }
    }

    /// Keeps received KV rows in the mirror (refused, and logged within a budget, when they do
    /// not fit it: another plan, layers not held here, beyond its bound).
    func keepMirrored(_ rows: KVRowsData, from sender: String?) {
        guard let store = mirrorStore else {
            limited.warning("mirror: dropped KV rows: this worker keeps no mirror", key: sender ?? "",
                            metadata: ["epoch": "\(rows.planEpoch)", "layers": "\(rows.layers)"])
            return
        }
        do {
            try rows.payload.withUnsafeBytes { bytes throws(KVMirrorRefusal) in
                try store.accept(epoch: rows.planEpoch, sequence: rows.sequence, position: rows.position, count: rows.count,
                                 layers: rows.layers, kvDimension: rows.kvDimension, payload: bytes)
            }
            WorkerMetrics.mirrorBytes.record(store.byteCount)
        } catch {
            limited.warning("mirror: refused KV rows", key: sender ?? "", metadata: [
                "sequence": "\(rows.sequence)", "epoch": "\(rows.planEpoch)", "layers": "\(rows.layers)", "reason": "\(error)",
            ])
        }
    }

    /// Drops mirrored rows of `sequences` the owner released.
    func releaseMirror(_ sequences: [UInt64], epoch: UInt64) {
        guard let store = mirrorStore, store.epoch == epoch else { return }
        store.release(sequences.map(SequenceID.init))
        WorkerMetrics.mirrorBytes.record(store.byteCount)
    }

    /// Closes the transports to the holders.
    func closeMirrorLinks() async {
        guard let links = mirrorLinks else { return }
        mirrorLinks = nil
        for t in links.targets { await t.hop.close() }
    }
}
