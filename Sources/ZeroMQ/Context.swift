import CZeroMQ
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A libzmq context: owns libzmq's I/O threads; every socket belongs to one context.
///
/// libzmq contexts are thread-safe. Sockets keep their context alive, so the context is terminated
/// (`zmq_ctx_term`) when the last socket and the last reference are gone, or explicitly with
/// ``terminate()``. Sockets created by this layer default to linger 0, so termination does not hang.
public final class Context: Sendable {
    /// The raw `void *` context handle.
    let handle: SendablePointer
    private let terminated = Atomic<Bool>(false)

    /// Creates a context with one I/O thread.
    public convenience init() throws(ZMQError) {
        try self.init(ioThreads: 1)
    }

    /// Creates a context with `ioThreads` I/O threads (libzmq's default is one). A connection is
    /// served by one I/O thread, which also does its CURVE encryption; daemons that move bulk
    /// data over several connections use more.
    public init(ioThreads: Int) throws(ZMQError) {
        guard let raw = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        if ioThreads != 1, zmq_ctx_set(raw, ZMQ_IO_THREADS, Int32(clamping: max(1, ioThreads))) != 0 {
            let error = ZMQError.last("zmq_ctx_set(ZMQ_IO_THREADS)")
            zmq_ctx_term(raw)
            throw error
        }
        handle = SendablePointer(raw)
    }

    /// Makes blocking operations on this context's sockets fail with `ETERM` (`zmq_ctx_shutdown`),
    /// without closing them. Idempotent.
    public func shutdown() {
        guard !terminated.load(ordering: .acquiring) else { return }
        _ = zmq_ctx_shutdown(handle.raw)
    }

    /// Terminates the context (`zmq_ctx_term`). Blocks until all its sockets are closed, so close them
    /// first. Idempotent.
    public func terminate() {
        guard !terminated.exchange(true, ordering: .acquiringAndReleasing) else { return }
        while zmq_ctx_term(handle.raw) != 0 {
            if zmq_errno() != EINTR { break }
        }
    }

    deinit { terminate() }

    /// True when libzmq was built with CURVE security (`zmq_has("curve")`).
    public static var hasCurve: Bool { zmq_has("curve") == 1 }

    /// libzmq's version as (major, minor, patch).
    public static var version: (major: Int, minor: Int, patch: Int) {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (Int(major), Int(minor), Int(patch))
    }
}

/// A raw pointer that may cross threads because its owner guarantees single-threaded use
/// (sockets) or the pointee is thread-safe (contexts).
struct SendablePointer: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
    init(_ raw: UnsafeMutableRawPointer) { self.raw = raw }
}
