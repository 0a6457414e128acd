/// How quickly a socket gives up on a TCP connection that stopped working (a cut link, a frozen
/// peer, heavy packet loss) and makes a new one.
///
/// Left to the kernel, a connection whose segments are being dropped backs off exponentially:
/// retransmissions wait 0.2, 0.4, ... 60 s, a connect whose SYN was lost waits 1, 3, 7, 15, 31 s,
/// and the link stays silent long after the loss has stopped. These settings bound every part:
/// ZMTP heartbeats drop a connection that has not been heard for `heartbeatTimeout`, data may stay
/// unacknowledged for at most `maxRetransmit`, a connect attempt is abandoned after
/// `connectTimeout`, and reconnects are tried at least every `reconnectMax`.
public struct LinkLiveness: Sendable, Equatable {
    /// Milliseconds between ZMTP PINGs.
    public var heartbeatInterval: Int32
    /// Milliseconds without any traffic after which the connection is closed.
    public var heartbeatTimeout: Int32
    /// Milliseconds a connect may take.
    public var connectTimeout: Int32
    /// Milliseconds sent data may stay unacknowledged.
    public var maxRetransmit: Int32
    /// Upper bound of the reconnect back-off, milliseconds.
    public var reconnectMax: Int32

    /// Creates settings.
    public init(heartbeatInterval: Int32, heartbeatTimeout: Int32, connectTimeout: Int32, maxRetransmit: Int32,
                reconnectMax: Int32) {
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.connectTimeout = connectTimeout
        self.maxRetransmit = maxRetransmit
        self.reconnectMax = reconnectMax
    }

    /// The least silence after which these settings close a connection themselves: ZMTP
    /// heartbeats need `heartbeatTimeout` without traffic, the retransmission limit `maxRetransmit`
    /// of unacknowledged data (in a cut link the peer is silent as long). A connection that closes
    /// sooner after its peer's last message was closed by the peer's end: its process exited or
    /// was killed (the kernel sends FIN or RST at once), or it made the connection again.
    public var shortestOwnDrop: Duration {
        // libzmq times heartbeats out after the interval when no timeout is set.
        let heartbeats = heartbeatInterval > 0 ? (heartbeatTimeout > 0 ? heartbeatTimeout : heartbeatInterval) : .max
        return .milliseconds(max(0, min(heartbeats, maxRetransmit > 0 ? maxRetransmit : .max)))
    }

    /// Whether a connection that closed `silentFor` after its peer's last message was closed by
    /// the peer's end rather than by these settings: the silence is under half of
    /// ``shortestOwnDrop`` (the other half is a margin for timers and for messages read late).
    public func closedByPeer(silentFor: Duration) -> Bool {
        silentFor < shortestOwnDrop / 2
    }

    /// What Caravan's cluster sockets use: a dead link is noticed within about 2 s, and a healed
    /// one is used again within about 1 s.
    public static let cluster = LinkLiveness(heartbeatInterval: 500, heartbeatTimeout: 2000, connectTimeout: 1000,
                                             maxRetransmit: 3000, reconnectMax: 1000)
}

/// Which end of its connections a socket is: the side that binds or the side that connects.
public enum LinkEnd: Sendable {
    /// The socket binds; peers connect to it.
    case bound
    /// The socket binds and PINGs its peers itself, so that it drops a silent connection on its
    /// own clock: the coordinator's control socket, whose connection watch tells a frozen worker
    /// (its connection dropped after this silence) from a killed one (closed at once). It stays
    /// exposed to the libzmq abort described at ``Socket/apply(_:as:)`` from peers holding a worker
    /// key.
    case boundPinging
    /// The socket connects to a peer that binds.
    case connecting
}

extension Socket {
    /// Applies `liveness` (before `connect`/`bind`).
    ///
    /// A connecting socket sends ZMTP PINGs every `heartbeatInterval`, drops the connection when
    /// nothing came back within `heartbeatTimeout`, and asks the bound side (the PINGs' TTL) to drop
    /// it too after as long without traffic; its connects and reconnects are bounded. A bound socket
    /// sends no PINGs of its own: libzmq 4.3.4 aborts the process (`Assertion failed: !_io_error`,
    /// stream_engine_base.cpp) when the heartbeat timer fires on a connection whose input stopped at
    /// a full receive queue and whose peer then hung up, so any peer could kill a daemon by flooding
    /// one of its bound sockets and disconnecting (the long socket fuzz run did, docs/protocol.md).
    /// It still answers PINGs, drops a connection silent past the peer's TTL, and bounds how long
    /// sent data may stay unacknowledged.
    public func apply(_ liveness: LinkLiveness, as end: LinkEnd) throws(ZMQError) {
        try set(.tcpMaxRetransmitTimeout, liveness.maxRetransmit)
        guard end != .bound else { return }
        try set(.heartbeatInterval, liveness.heartbeatInterval)
        try set(.heartbeatTimeout, liveness.heartbeatTimeout)
        guard end == .connecting else { return }
        try set(.heartbeatTTL, liveness.heartbeatTimeout)
        try set(.connectTimeout, liveness.connectTimeout)
        try set(.reconnectIntervalMax, liveness.reconnectMax)
    }
}
