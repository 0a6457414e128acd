import CZeroMQ

/// Which events a socket monitor publishes (`ZMQ_EVENT_*` bits).
public struct SocketEventMask: OptionSet, Sendable, Hashable {
    /// libzmq's bit mask.
    public let rawValue: Int32
    /// Creates a mask from libzmq's bits.
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// A connection was accepted by a bound socket (`ZMQ_EVENT_ACCEPTED`; the value is its file
    /// descriptor).
    public static let accepted = SocketEventMask(rawValue: ZMQ_EVENT_ACCEPTED)
    /// A connection was closed, by either end or by a liveness check (`ZMQ_EVENT_DISCONNECTED`;
    /// the value is its file descriptor).
    public static let disconnected = SocketEventMask(rawValue: ZMQ_EVENT_DISCONNECTED)
}

/// One event read from a socket monitor: two frames, the first holding the event number
/// (`uint16`) and a value (`uint32`, a file descriptor for connection events) in host order, the
/// second the endpoint.
public struct SocketEvent: Sendable, Equatable {
    /// What happened.
    public enum Kind: Sendable, Equatable {
        /// `ZMQ_EVENT_ACCEPTED`.
        case accepted
        /// `ZMQ_EVENT_DISCONNECTED`.
        case disconnected
        /// Any other event, by number.
        case other(UInt16)
    }

    /// What happened.
    public var kind: Kind
    /// The event's value: the connection's file descriptor for accepted and disconnected.
    public var value: UInt32
    /// The endpoint the event is about (the bound address for accepted connections).
    public var endpoint: String

    /// An event.
    public init(kind: Kind, value: UInt32, endpoint: String) {
        self.kind = kind
        self.value = value
        self.endpoint = endpoint
    }

    /// The event in a monitor message, nil when the frames are not one (wrong count or size).
    public init?(frames: [Message]) {
        guard frames.count == 2, frames[0].count == 6 else { return nil }
        let (number, value) = frames[0].withUnsafeBytes { raw in
            (raw.loadUnaligned(fromByteOffset: 0, as: UInt16.self), raw.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        }
        switch Int32(number) {
        case ZMQ_EVENT_ACCEPTED: kind = .accepted
        case ZMQ_EVENT_DISCONNECTED: kind = .disconnected
        default: kind = .other(number)
        }
        self.value = value
        endpoint = frames[1].string
    }

    /// The file descriptor of a connection event (nil for others, or a value that is none).
    public var fileDescriptor: Int32? {
        switch kind {
        case .accepted, .disconnected: value <= UInt32(Int32.max) ? Int32(value) : nil
        case .other: nil
        }
    }
}

extension Socket {
    /// Publishes `events` of this socket on the inproc endpoint `endpoint` (`zmq_socket_monitor`),
    /// where a PAIR socket of the same context connects to read them (``SocketEvent``). Call it
    /// before `bind` to see every connection.
    public func monitor(_ endpoint: String, events: SocketEventMask) throws(ZMQError) {
        if isClosed { throw ZMQError(code: ZMQErrorCode.notSocket, operation: "zmq_socket_monitor", detail: "socket is closed") }
        if zmq_socket_monitor(handle, endpoint, events.rawValue) != 0 { throw ZMQError.last("zmq_socket_monitor(\(endpoint))") }
    }
}
