/// When a worker's heartbeat arrived, when the worker sent it and its sequence number: enough to
/// tell, at the next heartbeat, whether a gap between arrivals was made by the worker (it sent
/// late: a busy or stopped process) or on the way (the link delayed or lost heartbeats).
public struct HeartbeatMark: Sendable, Equatable {
    /// Arrival on the coordinator's clock, milliseconds.
    public var arrivedAt: UInt64
    /// The worker's wall clock when it sent the heartbeat, Unix milliseconds (0 = not reported).
    public var sentUnixMs: UInt64
    /// The worker's heartbeat sequence number (0 = not reported).
    public var sequence: UInt64

    /// A heartbeat received at `arrivedAt`.
    public init(arrivedAt: UInt64, sentUnixMs: UInt64, sequence: UInt64) {
        self.arrivedAt = arrivedAt
        self.sentUnixMs = sentUnixMs
        self.sequence = sequence
    }
}

/// A gap between two heartbeats of a worker longer than the suspect time, and who made it.
///
/// The difference matters when the coordinator re-plans. A worker whose *link* delays or drops
/// messages (heartbeats sent on time arrive late, or never) would stall the next pipeline too, so
/// a re-plan leaves it out until it has been steady for the join-settle time. A worker that only
/// *sent* late (its process got no CPU for a while: several workers sharing cores, a stage load,
/// a brief freeze) has a sound link; leaving it out of a re-plan wastes its layers and, once it is
/// "steady" again, costs a second re-plan (issue 13: after a kill, the plan put every layer on one
/// survivor, then re-planned again when the other one "joined").
public struct HeartbeatGap: Sendable, Equatable {
    /// Who made the gap.
    public enum Kind: String, Sendable, Equatable {
        /// The worker sent late (its heartbeats' own send times are as far apart as their arrivals).
        case worker
        /// Heartbeats sent on time arrived late, or some never arrived (or no send times were
        /// reported, so the link cannot be cleared).
        case link
    }

    /// When the heartbeat ending the gap arrived (coordinator clock), milliseconds.
    public var at: UInt64
    /// Time between the two arrivals, milliseconds.
    public var milliseconds: UInt64
    /// Of that, time the heartbeat spent on the way beyond the usual (arrival gap minus send gap),
    /// milliseconds.
    public var delayMs: UInt64
    /// Who made it.
    public var kind: Kind

    /// A gap.
    public init(at: UInt64, milliseconds: UInt64, delayMs: UInt64, kind: Kind) {
        self.at = at
        self.milliseconds = milliseconds
        self.delayMs = delayMs
        self.kind = kind
    }

    /// The gap between `previous` and `current` when their arrivals are more than `suspectAfter`
    /// apart (nil otherwise, and for heartbeats arriving out of order). It is the worker's when
    /// the send times explain it (what the heartbeat spent on the way beyond the previous one's is
    /// at most `suspectAfter`) and no heartbeat in between is missing; otherwise the link's.
    /// Send times are compared only with each other (the worker's clock), never with the
    /// coordinator's.
    public static func between(_ previous: HeartbeatMark, _ current: HeartbeatMark, suspectAfter: UInt64) -> HeartbeatGap? {
        guard current.arrivedAt > previous.arrivedAt else { return nil }
        let gap = current.arrivedAt - previous.arrivedAt
        guard gap > suspectAfter else { return nil }
        if current.sequence != 0, previous.sequence != 0, current.sequence <= previous.sequence { return nil }
        let missing = current.sequence != 0 && previous.sequence != 0 && current.sequence > previous.sequence + 1
        guard current.sentUnixMs != 0, previous.sentUnixMs != 0, current.sentUnixMs >= previous.sentUnixMs else {
            return HeartbeatGap(at: current.arrivedAt, milliseconds: gap, delayMs: gap, kind: .link)
        }
        let sendGap = current.sentUnixMs - previous.sentUnixMs
        let delay = gap > sendGap ? gap - sendGap : 0
        let kind: Kind = missing || delay > suspectAfter ? .link : .worker
        return HeartbeatGap(at: current.arrivedAt, milliseconds: gap, delayMs: delay, kind: kind)
    }
}
