import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The socket patterns this layer supports.
public enum SocketType: Sendable, Equatable {
    /// Asynchronous request side: round-robins outgoing, fair-queues incoming.
    case dealer
    /// Routes by peer identity: incoming frames are prefixed with the sender's routing id.
    case router
    /// Strict request/reply client (used by tests and simple tools).
    case req
    /// Strict request/reply server (used by the ZAP handler).
    case rep
    /// Exclusive pair (inproc signalling).
    case pair

    var raw: Int32 {
        switch self {
        case .dealer: ZMQ_DEALER
        case .router: ZMQ_ROUTER
        case .req: ZMQ_REQ
        case .rep: ZMQ_REP
        case .pair: ZMQ_PAIR
        }
    }
}

/// A libzmq socket.
///
/// Like libzmq sockets, a `Socket` is not thread-safe: one thread (or the ``EventLoop``) owns it at a
/// time. It is `Sendable` only so that ownership can be handed over (e.g. to an ``EventLoop``); the
/// previous owner must stop using it then. New sockets get linger 0 so closing never blocks.
public final class Socket: @unchecked Sendable {
    /// The context this socket belongs to (kept alive by the socket).
    public let context: Context
    /// The socket's pattern.
    public let type: SocketType
    let handle: UnsafeMutableRawPointer
    private var closed = false

    /// Creates a socket of `type` in `context`, with linger 0.
    public init(context: Context, type: SocketType) throws(ZMQError) {
        guard let raw = zmq_socket(context.handle.raw, type.raw) else {
            throw ZMQError.last("zmq_socket(\(type))")
        }
        self.context = context
        self.type = type
        self.handle = raw
        try set(.linger, 0)
    }

    deinit { close() }

    /// True once ``close()`` ran.
    public var isClosed: Bool { closed }

    /// Closes the socket (`zmq_close`); pending outgoing messages are dropped after the linger time.
    /// Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        zmq_close(handle)
    }

    private func checkOpen(_ op: @autoclosure () -> String) throws(ZMQError) {
        if closed { throw ZMQError(code: ZMQErrorCode.notSocket, operation: op(), detail: "socket is closed") }
    }

    /// Binds to `endpoint`, e.g. `tcp://127.0.0.1:*` (ephemeral port; read ``lastEndpoint``).
    public func bind(_ endpoint: String) throws(ZMQError) {
        try checkOpen("zmq_bind(\(endpoint))")
        if zmq_bind(handle, endpoint) != 0 { throw ZMQError.last("zmq_bind(\(endpoint))") }
    }

    /// Connects to `endpoint`; libzmq connects (and reconnects) in the background.
    public func connect(_ endpoint: String) throws(ZMQError) {
        try checkOpen("zmq_connect(\(endpoint))")
        if zmq_connect(handle, endpoint) != 0 { throw ZMQError.last("zmq_connect(\(endpoint))") }
    }

    /// Stops listening on `endpoint`.
    public func unbind(_ endpoint: String) throws(ZMQError) {
        try checkOpen("zmq_unbind(\(endpoint))")
        if zmq_unbind(handle, endpoint) != 0 { throw ZMQError.last("zmq_unbind(\(endpoint))") }
    }

    /// Disconnects from `endpoint`.
    public func disconnect(_ endpoint: String) throws(ZMQError) {
        try checkOpen("zmq_disconnect(\(endpoint))")
        if zmq_disconnect(handle, endpoint) != 0 { throw ZMQError.last("zmq_disconnect(\(endpoint))") }
    }

    /// The endpoint last bound or connected (`ZMQ_LAST_ENDPOINT`), with the real port after `:*`.
    public var lastEndpoint: String {
        get throws(ZMQError) { try getString(ZMQ_LAST_ENDPOINT, name: "ZMQ_LAST_ENDPOINT") }
    }

    // MARK: Sending

    /// Sends one frame. `more` marks that further frames of the same message follow; `dontWait`
    /// fails with `EAGAIN` instead of blocking (otherwise the send timeout applies).
    public func send(_ message: Message, more: Bool = false, dontWait: Bool = false) throws(ZMQError) {
        try checkOpen("zmq_msg_send")
        let copy = message.makeSendCopy()
        defer { zmq_msg_close(copy); copy.deallocate() }
        var flags: Int32 = 0
        if more { flags |= ZMQ_SNDMORE }
        if dontWait { flags |= ZMQ_DONTWAIT }
        while zmq_msg_send(copy, handle, flags) < 0 {
            let error = ZMQError.last("zmq_msg_send")
            if error.code != EINTR { throw error }
        }
    }

    /// Sends all `frames` as one multipart message. libzmq accepts a multipart message atomically:
    /// if the first frame is accepted, the rest are too.
    public func send(_ frames: [Message], dontWait: Bool = false) throws(ZMQError) {
        precondition(!frames.isEmpty, "a message needs at least one frame")
        for (index, frame) in frames.enumerated() {
            try send(frame, more: index < frames.count - 1, dontWait: dontWait)
        }
    }

    /// Sends `frames` (copied) as one multipart message.
    public func send(_ frames: [[UInt8]], dontWait: Bool = false) throws(ZMQError) {
        try send(frames.map { Message($0) }, dontWait: dontWait)
    }

    // MARK: Receiving

    /// Receives one frame; `dontWait` fails with `EAGAIN` when none is queued, otherwise the receive
    /// timeout applies (`EAGAIN` when it expires).
    public func receiveFrame(dontWait: Bool = false) throws(ZMQError) -> Message {
        try checkOpen("zmq_msg_recv")
        let storage = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        zmq_msg_init(storage)
        while zmq_msg_recv(storage, handle, dontWait ? ZMQ_DONTWAIT : 0) < 0 {
            let error = ZMQError.last("zmq_msg_recv")
            if error.code != EINTR {
                zmq_msg_close(storage)
                storage.deallocate()
                throw error
            }
        }
        return Message(taking: storage, hasMore: zmq_msg_more(storage) != 0)
    }

    /// Receives all frames of the next multipart message. Once the first frame arrived, the rest are
    /// already queued (libzmq delivers multipart messages atomically).
    public func receive(dontWait: Bool = false) throws(ZMQError) -> [Message] {
        var frames = [try receiveFrame(dontWait: dontWait)]
        while frames[frames.count - 1].hasMore {
            frames.append(try receiveFrame())
        }
        return frames
    }

    /// Receives the next multipart message as copied byte arrays.
    public func receiveBytes(dontWait: Bool = false) throws(ZMQError) -> [[UInt8]] {
        try receive(dontWait: dontWait).map(\.bytes)
    }

    /// The socket's current readiness (`ZMQ_EVENTS`).
    public var events: PollEvents {
        get throws(ZMQError) { PollEvents(rawValue: Int16(truncatingIfNeeded: try get(IntOption(ZMQ_EVENTS, "ZMQ_EVENTS")))) }
    }
}
