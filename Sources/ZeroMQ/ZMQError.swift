import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error reported by libzmq (or by this Swift layer), carrying the errno-style code and the
/// operation that failed.
///
/// `description` reads like `"zmq_connect(tcp://nowhere) failed: Invalid argument (errno 22)"`.
public struct ZMQError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The errno value (`zmq_errno()`), or one of libzmq's own codes such as `ETERM`.
    public let code: Int32
    /// The operation that failed, e.g. `"zmq_bind(tcp://127.0.0.1:*)"`.
    public let operation: String
    /// Extra explanation added by this layer (empty when libzmq's text says it all).
    public let detail: String

    /// Creates an error for `operation` with an explicit code.
    public init(code: Int32, operation: String, detail: String = "") {
        self.code = code
        self.operation = operation
        self.detail = detail
    }

    /// The error libzmq recorded for the calling thread (`zmq_errno()`).
    static func last(_ operation: @autoclosure () -> String) -> ZMQError {
        ZMQError(code: zmq_errno(), operation: operation())
    }

    /// libzmq's text for `code` (`zmq_strerror`).
    public var message: String { String(cString: zmq_strerror(code)) }

    /// Human readable description naming the operation, the reason and the code.
    public var description: String {
        var text = "\(operation) failed: \(message) (errno \(code))"
        if !detail.isEmpty { text += ": \(detail)" }
        return text
    }

    /// True when the operation would have blocked or its timeout expired (`EAGAIN`).
    public var isTimeout: Bool { code == EAGAIN }
    /// True when the context was terminated (`ETERM`).
    public var isTerminated: Bool { code == ZMQErrorCode.terminated }
    /// True when the socket (or async socket) was closed while the operation waited.
    public var isClosed: Bool { code == ZMQErrorCode.notSocket }
    /// True when the waiting task was cancelled.
    public var isCancelled: Bool { code == ECANCELED }
}

/// libzmq's own error codes (they sit above `ZMQ_HAUSNUMERO` when the platform lacks them).
public enum ZMQErrorCode {
    /// `ETERM`: the context was terminated.
    public static let terminated: Int32 = ETERM
    /// `EFSM`: the operation is not valid in the socket's current state (e.g. REQ sending twice).
    public static let invalidState: Int32 = EFSM
    /// `ENOTSOCK`: the socket is closed or invalid.
    public static let notSocket: Int32 = ENOTSOCK
    /// `EHOSTUNREACH`: a ROUTER with router-mandatory could not route to the given identity.
    public static let hostUnreachable: Int32 = EHOSTUNREACH
}
