/// A change in the connections of a ROUTER's peers, as a ``ConnectionTable`` infers it.
public enum ConnectionChange: Sendable, Equatable {
    /// A connection carried its first message from `peer` (a routing id): the peer is connected,
    /// for the first time or again after a close.
    case opened(peer: [UInt8])
    /// The connection `peer`'s messages last came on closed; `silentFor` is the time since its
    /// last message (a connection dropped by a liveness check had been silent for at least that
    /// check's timeout, see ``LinkLiveness/shortestOwnDrop``).
    case closed(peer: [UInt8], silentFor: Duration)
}

/// Which peer each open connection of a ROUTER carries, from the monitor's accepted and
/// disconnected events (by file descriptor) and the connection each received message came on
/// (``Message/sourceFileDescriptor``); a pure state machine, fed in the order things happened.
///
/// A peer's *current* connection is the one its latest message came on. Closing it closes the
/// peer (``ConnectionChange/closed(peer:silentFor:)``), unless the peer's messages have moved to
/// a newer connection meanwhile (it reconnected, e.g. with `ZMQ_ROUTER_HANDOVER`). Descriptors are
/// reused by the kernel, so an accepted connection forgets what was known of its number; messages
/// on a descriptor with no open connection known (one accepted before the watch began, or one
/// already closed whose last messages are read late) change nothing.
public struct ConnectionTable: Sendable {
    struct Connection: Sendable {
        var peer: [UInt8]?
        var lastMessage: ContinuousClock.Instant?
    }

    private var open: [Int32: Connection] = [:]
    private var current: [[UInt8]: Int32] = [:]

    /// An empty table.
    public init() {}

    /// Open connections known.
    public var openConnections: Int { open.count }

    /// The descriptor of `peer`'s current connection, nil when it has none open.
    public func connection(of peer: [UInt8]) -> Int32? { current[peer] }

    /// A connection was accepted on `fd`.
    public mutating func accepted(fd: Int32) {
        // Whatever was known of the number belonged to a connection closed before.
        forget(fd)
        open[fd] = Connection()
    }

    /// A message from `peer` came on the connection `fd` at `at`. Returns `.opened` when the
    /// connection carries the peer for the first time.
    public mutating func received(from peer: [UInt8], fd: Int32, at: ContinuousClock.Instant) -> ConnectionChange? {
        guard var connection = open[fd] else { return nil }
        if let other = connection.peer, other != peer, current[other] == fd { current[other] = nil }
        connection.peer = peer
        connection.lastMessage = at
        open[fd] = connection
        let previous = current[peer]
        current[peer] = fd
        return previous != fd ? .opened(peer: peer) : nil
    }

    /// The connection on `fd` closed at `at`. Returns `.closed` when it was its peer's current
    /// connection.
    public mutating func disconnected(fd: Int32, at: ContinuousClock.Instant) -> ConnectionChange? {
        guard let connection = open.removeValue(forKey: fd), let peer = connection.peer, current[peer] == fd else { return nil }
        current[peer] = nil
        let silence = connection.lastMessage.map { $0 < at ? $0.duration(to: at) : .zero } ?? .zero
        return .closed(peer: peer, silentFor: silence)
    }

    private mutating func forget(_ fd: Int32) {
        if let peer = open.removeValue(forKey: fd)?.peer, current[peer] == fd { current[peer] = nil }
    }
}
