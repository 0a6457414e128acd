import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Readiness flags for polling (`ZMQ_POLLIN`, `ZMQ_POLLOUT`, `ZMQ_POLLERR`).
public struct PollEvents: OptionSet, Sendable, Hashable {
    /// libzmq's bit mask.
    public let rawValue: Int16
    /// Creates flags from libzmq's bit mask.
    public init(rawValue: Int16) { self.rawValue = rawValue }
    /// A message can be received (or the file descriptor is readable).
    public static let pollIn = PollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// A message can be sent without blocking.
    public static let pollOut = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
    /// An error condition (file descriptors only).
    public static let pollError = PollEvents(rawValue: Int16(ZMQ_POLLERR))
}

/// A set of sockets and file descriptors waited on together with `zmq_poll`.
///
/// The poller refers to its sockets; like them it belongs to one thread.
public struct Poller {
    private var items: [zmq_pollitem_t] = []
    private var sockets: [Socket?] = []

    /// An empty poller.
    public init() {}

    /// Number of registered items.
    public var count: Int { items.count }

    /// Adds `socket`, watching `events`; returns its index for ``readyEvents(at:)``.
    @discardableResult
    public mutating func add(_ socket: Socket, events: PollEvents = .pollIn) -> Int {
        items.append(zmq_pollitem_t(socket: socket.handle, fd: -1, events: events.rawValue, revents: 0))
        sockets.append(socket)
        return items.count - 1
    }

    /// Adds a plain file descriptor (e.g. a wake-up pipe), watching `events`; returns its index.
    @discardableResult
    public mutating func add(fileDescriptor: Int32, events: PollEvents = .pollIn) -> Int {
        items.append(zmq_pollitem_t(socket: nil, fd: fileDescriptor, events: events.rawValue, revents: 0))
        sockets.append(nil)
        return items.count - 1
    }

    /// Changes the events watched for the item at `index`.
    public mutating func setEvents(_ events: PollEvents, at index: Int) {
        items[index].events = events.rawValue
    }

    /// Waits until at least one item is ready or `timeoutMilliseconds` passed (-1: forever).
    /// Returns the number of ready items (0 on timeout). `EINTR` counts as a timeout.
    @discardableResult
    public mutating func poll(timeoutMilliseconds: Int) throws(ZMQError) -> Int {
        for i in items.indices { items[i].revents = 0 }
        let rc = items.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, Int32($0.count), timeoutMilliseconds) }
        if rc < 0 {
            let error = ZMQError.last("zmq_poll")
            if error.code == EINTR { return 0 }
            throw error
        }
        return Int(rc)
    }

    /// The events reported ready for the item at `index` by the last ``poll(timeoutMilliseconds:)``.
    public func readyEvents(at index: Int) -> PollEvents {
        PollEvents(rawValue: items[index].revents)
    }
}

/// A non-blocking pipe used to wake a thread blocked in `zmq_poll` from any thread.
final class WakePipe: Sendable {
    let readFD: Int32
    let writeFD: Int32

    init() throws(ZMQError) {
        var fds: [Int32] = [0, 0]
        if pipe(&fds) != 0 { throw ZMQError(code: errno, operation: "pipe") }
        readFD = fds[0]
        writeFD = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
    }

    deinit {
        close(readFD)
        close(writeFD)
    }

    /// Makes the read end readable (a full pipe already is, so `EAGAIN` is fine).
    func wake() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    /// Empties the pipe.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while buffer.withUnsafeMutableBytes({ read(readFD, $0.baseAddress, $0.count) }) > 0 {}
    }
}
