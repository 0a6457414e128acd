/// Reports when a ROUTER's peers connect and when their connections close, from the socket's
/// monitor (``SocketEvent``) and the connection each message came on (``ConnectionTable``).
///
/// Given to ``AsyncSocket/init(loop:type:watch:configure:)``: the loop thread reads the monitor
/// before each message it takes from the socket, so every change is seen in the order libzmq
/// made it, and calls `onChange` (on the loop thread: it must return quickly, e.g. by yielding to
/// a stream). A message sits in libzmq's queue until somebody receives it, so a peer counts as
/// connected from its first message *received*; a socket whose messages are not being received
/// reports closures late or not at all.
public final class ConnectionWatch: Sendable {
    let onChange: @Sendable (ConnectionChange) -> Void
    let onClose: @Sendable () -> Void

    /// A watch calling `onChange` with each change and `onClose` once the socket is closed.
    public init(onChange: @escaping @Sendable (ConnectionChange) -> Void, onClose: @escaping @Sendable () -> Void = {}) {
        self.onChange = onChange
        self.onClose = onClose
    }
}

/// The loop thread's side of a ``ConnectionWatch``: the monitor's PAIR socket and the table (only
/// the loop thread touches it).
final class WatchState: @unchecked Sendable {
    let monitor: Socket
    let watch: ConnectionWatch
    var table = ConnectionTable()

    init(monitor: Socket, watch: ConnectionWatch) {
        self.monitor = monitor
        self.watch = watch
    }

    /// Applies every event the monitor has published so far.
    func drain(now: ContinuousClock.Instant) {
        while let frames = try? monitor.receive(dontWait: true) {
            guard let event = SocketEvent(frames: frames), let fd = event.fileDescriptor else { continue }
            switch event.kind {
            case .accepted: table.accepted(fd: fd)
            case .disconnected: if let change = table.disconnected(fd: fd, at: now) { watch.onChange(change) }
            case .other: break
            }
        }
    }

    /// Notes the connection a message received from the ROUTER came on: its first frame is the
    /// sender's routing id, which the ROUTER makes itself (libzmq 4.3 gives it no descriptor on a
    /// connection's first message), the next one came off the connection.
    func observe(_ frames: [Message], now: ContinuousClock.Instant) {
        guard let id = frames.first, let fd = frames.dropFirst().first?.sourceFileDescriptor ?? id.sourceFileDescriptor else { return }
        if let change = table.received(from: id.bytes, fd: fd, at: now) { watch.onChange(change) }
    }

    func close() {
        monitor.close()
        watch.onClose()
    }
}

extension AsyncSocket {
    /// Creates a ROUTER in the loop's context whose connections `watch` follows: a monitor is
    /// attached before `configure` sets options and binds it (on the calling thread), then both
    /// are handed to the loop.
    public convenience init(loop: EventLoop, type: SocketType, watch: ConnectionWatch, configure: (Socket) throws -> Void) throws {
        precondition(type == .router, "a connection watch follows a ROUTER's peers")
        let socket = try Socket(context: loop.context, type: type)
        let monitor: Socket
        do {
            let endpoint = "inproc://caravan-connection-watch-\(UInt64.random(in: 0...UInt64.max))"
            try socket.monitor(endpoint, events: [.accepted, .disconnected])
            monitor = try Socket(context: loop.context, type: .pair)
            do {
                try monitor.connect(endpoint)
                try configure(socket)
            } catch {
                monitor.close()
                throw error
            }
        } catch {
            socket.close()
            throw error
        }
        try self.init(loop: loop, socket: socket, watch: WatchState(monitor: monitor, watch: watch))
    }
}
