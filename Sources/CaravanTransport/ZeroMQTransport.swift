import ZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A ``Transport`` over an ``AsyncSocket``: a ROUTER (many-peer side: the first frame of every
/// message is the routing id) or a DEALER (one-peer side). The identity of a delivery is the ZAP
/// `User-Id` of its frames. The socket is configured, bound or connected by the daemon's start-up.
public final class ZeroMQTransport: Transport {
    /// The socket.
    public let socket: AsyncSocket
    /// Whether the socket is a ROUTER (routing ids in front of every message).
    public let routed: Bool

    private let events: AsyncStream<PeerConnectionEvent>?

    /// Wraps `socket`; `routed` is true for a ROUTER.
    public init(_ socket: AsyncSocket, routed: Bool) {
        self.socket = socket
        self.routed = routed
        events = nil
    }

    private init(watched socket: AsyncSocket, events: AsyncStream<PeerConnectionEvent>) {
        self.socket = socket
        routed = true
        self.events = events
    }

    /// A ROUTER on `loop` with `liveness` whose peers' connections are watched
    /// (``ConnectionWatch``): ``connectionEvents()`` reports them, a close counting as the peer's
    /// own (``PeerConnectionEvent/Cause/peerEnded``) when it came sooner after the peer's last
    /// message than `liveness` would drop a connection. `configure` sets the other options and
    /// binds, on the calling thread.
    public static func watchedRouter(loop: EventLoop, liveness: LinkLiveness,
                                     configure: (Socket) throws -> Void) throws -> ZeroMQTransport {
        // Bounded: a consumer that stops reading loses the oldest events, never the daemon's memory.
        let (events, sink) = AsyncStream.makeStream(of: PeerConnectionEvent.self, bufferingPolicy: .bufferingNewest(4096))
        let watch = ConnectionWatch(onChange: { change in
            switch change {
            case .opened(let peer):
                sink.yield(.opened(peer: peer))
            case let .closed(peer, silentFor):
                sink.yield(.closed(peer: peer, cause: liveness.closedByPeer(silentFor: silentFor) ? .peerEnded : .silence))
            }
        }, onClose: { sink.finish() })
        let socket = try AsyncSocket(loop: loop, type: .router, watch: watch) { socket in
            // Its own PINGs make the silence drop that tells a frozen peer from a killed one.
            try socket.apply(liveness, as: .boundPinging)
            try configure(socket)
        }
        return ZeroMQTransport(watched: socket, events: events)
    }

    public func connectionEvents() -> AsyncStream<PeerConnectionEvent> {
        events ?? AsyncStream { $0.finish() }
    }

    public func send(_ frames: [Message], to peer: [UInt8]?, timeout: Duration?) async throws(TransportError) {
        guard !frames.isEmpty else { throw TransportError(.misuse, "a message needs at least one frame") }
        let all: [Message]
        switch (routed, peer) {
        case (true, let peer?): all = [Message(peer)] + frames
        case (false, nil): all = frames
        case (true, nil): throw TransportError(.misuse, "a ROUTER sends to a routing id")
        case (false, _?): throw TransportError(.misuse, "a DEALER has one peer")
        }
        do {
            try await socket.send(all, timeout: timeout)
        } catch {
            throw Self.transportError(error)
        }
    }

    public func receive() async throws(TransportError) -> Delivery {
        while true {
            let frames: [Message]
            do {
                frames = try await socket.receive()
            } catch {
                throw Self.transportError(error)
            }
            guard routed else { return Delivery(sender: nil, identity: frames.first?.userID, frames: frames) }
            // A routing id alone is no message.
            guard frames.count >= 2 else { continue }
            return Delivery(sender: frames[0].bytes, identity: frames[1].userID ?? frames[0].userID,
                            frames: Array(frames.dropFirst()))
        }
    }

    public func close() async { await socket.close() }

    /// The transport's kind of a socket error.
    static func transportError(_ error: ZMQError) -> TransportError {
        if error.isClosed || error.isTerminated { return TransportError(.closed, "\(error)") }
        if error.isCancelled { return TransportError(.cancelled, "\(error)") }
        if error.isTimeout { return TransportError(.timedOut, "\(error)") }
        return TransportError(.failed, "\(error)")
    }
}

/// Makes DEALERs on an ``EventLoop`` for the endpoints of a plan: secured with the
/// ``SocketSecurity`` that `security` gives for the server's key, a send high-water mark of 64
/// and the cluster's ``LinkLiveness`` (a connection that stops answering is dropped and made
/// again instead of stalling for minutes).
public struct ZeroMQDialer: TransportDialer {
    /// The loop owning the sockets.
    public let loop: EventLoop
    private let security: @Sendable (String) -> SocketSecurity

    /// A dialer on `loop`; `security` maps a server key to the socket's security.
    public init(loop: EventLoop, security: @escaping @Sendable (String) -> SocketSecurity) {
        self.loop = loop
        self.security = security
    }

    public func dial(_ endpoint: String, serverKey: String) throws(TransportError) -> any Transport {
        let security = security(serverKey)
        do {
            let socket = try AsyncSocket(loop: loop, type: .dealer) { socket in
                try socket.apply(security)
                try socket.set(.sendHighWaterMark, 64)
                try socket.apply(LinkLiveness.cluster, as: .connecting)
                try socket.connect(endpoint)
            }
            return ZeroMQTransport(socket, routed: false)
        } catch let error as ZMQError {
            throw ZeroMQTransport.transportError(error)
        } catch {
            throw TransportError(.failed, "\(error)")
        }
    }
}
