import CaravanCore

/// Where each sequence that continues under a new plan resumes: the smallest count of positions
/// that every stage of the plan holds in all its layers (`AssignmentReady.held`: kept from the
/// stage before, or adopted from KV rows mirrored to its worker). Positions below it need no
/// recompute anywhere; a sequence some stage holds nothing of resumes at 0 (the replay, where
/// each stage recomputes only what it did not keep). Pure.
struct ResumePoints: Sendable, Equatable {
    /// The plan whose stages reported.
    private(set) var epoch: UInt64 = 0
    /// Per stage's worker (as its peer), what it holds of each sequence.
    private(set) var held: [PeerID: [SequenceID: Int]] = [:]

    /// Records what `peer` holds in the plan of `epoch` (a newer epoch forgets the older
    /// reports; an older one is ignored).
    mutating func record(_ positions: [SequenceID: Int], peer: PeerID, epoch: UInt64) {
        guard epoch >= self.epoch else { return }
        if epoch > self.epoch { (self.epoch, held) = (epoch, [:]) }
        held[peer] = positions
    }

    /// The positions each of `continuing` (sequence → committed positions) resumes at in the plan
    /// of `epoch` run by `peers`: the smallest count they all hold, at most the committed one;
    /// sequences that resume at 0 are left out.
    func resume(_ continuing: [SequenceID: Int], epoch: UInt64, peers: [PeerID]) -> [SequenceID: Int] {
        guard epoch == self.epoch, !peers.isEmpty else { return [:] }
        var resume: [SequenceID: Int] = [:]
        for (id, committed) in continuing {
            let p = peers.map { held[$0]?[id] ?? 0 }.min() ?? 0
            if min(p, committed) > 0 { resume[id] = min(p, committed) }
        }
        return resume
    }
}
