import ZeroMQ

/// One message taken from a ``Transport``: its frames, who sent it and who that sender proved to be.
public struct Delivery: Sendable {
    /// The sender's routing id on a transport that serves many peers (a ROUTER's side); nil on a
    /// transport with one peer (a DEALER's side).
    public let sender: [UInt8]?
    /// The sender's authenticated identity: the CURVE public key the connection was admitted with
    /// (ZeroMQ's ZAP `User-Id`, Z85), nil when the link is not authenticated (plain mode).
    public let identity: String?
    /// The message's frames (without the routing id).
    public let frames: [Message]

    /// A delivery of `frames` from `sender` proven to be `identity`.
    public init(sender: [UInt8]?, identity: String?, frames: [Message]) {
        self.sender = sender
        self.identity = identity
        self.frames = frames
    }
}

/// Why a transport operation failed.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure.
    public enum Kind: Sendable, Equatable {
        /// The transport was closed (by its owner, or its process is gone).
        case closed
        /// The operation did not complete within its timeout (a full queue, no message).
        case timedOut
        /// The waiting task was cancelled.
        case cancelled
        /// The operation is not possible on this transport (e.g. no peer named on a many-peer side).
        case misuse
        /// Any other failure of the underlying link.
        case failed
    }

    /// What kind of failure.
    public let kind: Kind
    /// What happened, for logs.
    public let description: String

    /// A failure of `kind`, described by `description`.
    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }

    /// Whether the transport is gone for good (closed or cancelled): a receive loop ends quietly.
    public var endsStream: Bool { kind == .closed || kind == .cancelled }
}

/// A change in a peer's connection to a many-peer side (see ``Transport/connectionEvents()``).
public enum PeerConnectionEvent: Sendable, Equatable {
    /// Why a connection closed, as far as the transport can tell.
    public enum Cause: Sendable, Equatable {
        /// The peer's end closed it while the peer was talking: its process exited or was killed
        /// (the kernel closes its connections at once), or it is making the connection again.
        case peerEnded
        /// It closed after the peer had been silent long enough for a liveness check to drop it:
        /// a frozen process, a dead machine or a cut link, as likely as a crash. Says nothing more
        /// than the silence itself.
        case silence
    }

    /// Messages from `peer` (a routing id) arrive on a new connection: it connected, or connected
    /// again after a close.
    case opened(peer: [UInt8])
    /// The connection `peer`'s messages came on closed.
    case closed(peer: [UInt8], cause: Cause)
}

/// What the daemons do with a connection, whatever carries it: send messages to a peer, receive
/// messages with their sender, close.
///
/// A transport is one of two sides. A *many-peer* side (bound, like a ZeroMQ ROUTER) receives from
/// every peer connected to it and sends to one of them by routing id. A *one-peer* side (connected,
/// like a DEALER) sends to and receives from the one endpoint it was connected to; `to` is nil.
/// Frames are ``ZeroMQ/Message`` buffers (the wire codec's output, sent as they are); the
/// implementations are ``ZeroMQTransport`` (sockets) and ``InMemoryTransport`` (in one process,
/// for tests).
public protocol Transport: AnyObject, Sendable {
    /// Sends `frames` as one message to `peer` (a routing id; nil on a one-peer side). Returns once
    /// the message is queued; waits while the queue is full, failing with `.timedOut` after
    /// `timeout`. A message to a peer that is not connected is dropped, as a ROUTER does.
    func send(_ frames: [Message], to peer: [UInt8]?, timeout: Duration?) async throws(TransportError)
    /// Waits for the next message.
    func receive() async throws(TransportError) -> Delivery
    /// Closes the transport: waiting operations fail with `.closed`. Idempotent.
    func close() async
    /// The connection events of a many-peer side whose connections are watched, in the order
    /// they happened; the stream ends when the transport closes. One consumer. A transport that
    /// does not watch its connections (a one-peer side, most sockets) ends it at once.
    func connectionEvents() -> AsyncStream<PeerConnectionEvent>
}

extension Transport {
    /// No connection events: the stream ends at once.
    public func connectionEvents() -> AsyncStream<PeerConnectionEvent> {
        AsyncStream { $0.finish() }
    }

    /// Sends `frames` to the one peer of a one-peer side.
    public func send(_ frames: [Message], timeout: Duration?) async throws(TransportError) {
        try await send(frames, to: nil, timeout: timeout)
    }

    /// The incoming messages as a stream: one ``receive()`` per iteration; it ends when the
    /// transport is closed or the consuming task is cancelled, and throws other failures.
    public func deliveries() -> AsyncThrowingStream<Delivery, any Error> {
        AsyncThrowingStream { [self] () async throws -> Delivery? in
            do throws(TransportError) {
                return try await self.receive()
            } catch {
                if error.endsStream { return nil }
                throw error
            }
        }
    }
}

/// Makes one-peer transports to endpoints named in plans (a next stage's data endpoint, the
/// coordinator's result endpoint): the ZeroMQ dialer creates a secured DEALER, the in-memory one
/// connects to a named endpoint of its hub.
public protocol TransportDialer: Sendable {
    /// A one-peer transport connected to `endpoint`, whose server proves itself with `serverKey`
    /// (a CURVE public key; ignored where links are not encrypted).
    func dial(_ endpoint: String, serverKey: String) throws(TransportError) -> any Transport
}
