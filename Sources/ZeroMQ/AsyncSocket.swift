import CZeroMQ
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A socket owned by an ``EventLoop``, used from any task with `async` calls.
///
/// Operations wait without blocking threads: they suspend until the loop thread completes them.
/// Cancelling the waiting task fails the operation with `ECANCELED` (a send that was not yet handed
/// to libzmq is then dropped). After ``close()`` (or the loop's shutdown) every operation fails with
/// an error whose ``ZMQError/isClosed`` is true.
public final class AsyncSocket: Sendable {
    /// The loop that owns the socket.
    public let loop: EventLoop
    let id: Int

    /// Hands `socket` (already configured, bound or connected) over to `loop`; the caller must not
    /// use `socket` afterwards.
    public convenience init(loop: EventLoop, socket: Socket) throws(ZMQError) {
        try self.init(loop: loop, socket: socket, watch: nil)
    }

    /// Hands `socket` and the loop side of its connection watch (if any) over to `loop`.
    init(loop: EventLoop, socket: Socket, watch: WatchState?) throws(ZMQError) {
        self.loop = loop
        let id = loop.shared.makeID()
        self.id = id
        let accepted = loop.shared.submit { core in core.entries[id] = LoopCore.Entry(socket: socket, watch: watch) }
        if !accepted {
            socket.close()
            watch?.close()
            throw LoopCore.closedError("AsyncSocket.init")
        }
    }

    /// Creates a socket of `type` in the loop's context, lets `configure` set options and
    /// bind/connect it (on the calling thread), then hands it to the loop. Throws `configure`'s
    /// error or a ``ZMQError``.
    public convenience init(
        loop: EventLoop,
        type: SocketType,
        configure: (Socket) throws -> Void = { _ in }
    ) throws {
        let socket = try Socket(context: loop.context, type: type)
        do {
            try configure(socket)
        } catch {
            socket.close()
            throw error
        }
        try self.init(loop: loop, socket: socket)
    }

    deinit {
        let id = self.id
        _ = loop.shared.submit { core in core.close(id: id, with: nil) }
    }

    /// Queues `frames` as one multipart message. Returns once libzmq accepted it; waits (without
    /// blocking a thread) while the high-water mark is reached, failing with `EAGAIN` after `timeout`.
    public func send(_ frames: [Message], timeout: Duration? = nil) async throws(ZMQError) {
        precondition(!frames.isEmpty, "a message needs at least one frame")
        let id = self.id
        try await wait("send", timeout: timeout) { (core: LoopCore, waiter: Waiter<Void>, deadline) in
            guard let entry = core.entries[id] else {
                waiter.finish(.failure(LoopCore.closedError("send")))
                return
            }
            entry.sends.append(LoopCore.PendingSend(waiter: waiter, frames: frames, deadline: deadline))
        }
    }

    /// Queues `frames` (copied) as one multipart message.
    public func send(_ frames: [[UInt8]], timeout: Duration? = nil) async throws(ZMQError) {
        try await send(frames.map { Message($0) }, timeout: timeout)
    }

    /// Waits for the next multipart message; fails with `EAGAIN` after `timeout`.
    public func receive(timeout: Duration? = nil) async throws(ZMQError) -> [Message] {
        let id = self.id
        return try await wait("receive", timeout: timeout) { (core: LoopCore, waiter: Waiter<[Message]>, deadline) in
            guard let entry = core.entries[id] else {
                waiter.finish(.failure(LoopCore.closedError("receive")))
                return
            }
            if !entry.backlog.isEmpty {
                let frames = entry.backlog.removeFirst()
                if !waiter.finish(.success(frames)) { entry.backlog.insert(frames, at: 0) }
                return
            }
            entry.receives.append(LoopCore.PendingReceive(waiter: waiter, deadline: deadline))
        }
    }

    /// The incoming messages as a stream. It pulls one message per iteration (libzmq's high-water
    /// marks keep applying, nothing piles up in memory), ends when the socket is closed or the
    /// consuming task is cancelled, and throws other receive errors.
    public func messages() -> AsyncThrowingStream<[Message], any Error> {
        AsyncThrowingStream { [self] () async throws -> [Message]? in
            do throws(ZMQError) {
                return try await self.receive()
            } catch {
                if error.isClosed || error.isCancelled || error.isTerminated { return nil }
                throw error
            }
        }
    }

    /// Runs `body` with the socket on the loop thread (for options, bind/connect, last endpoint).
    public func withSocket<R: Sendable>(
        _ body: @escaping @Sendable (Socket) throws(ZMQError) -> R
    ) async throws(ZMQError) -> R {
        let id = self.id
        return try await wait("withSocket", timeout: nil) { (core: LoopCore, waiter: Waiter<R>, _) in
            guard let entry = core.entries[id] else {
                waiter.finish(.failure(LoopCore.closedError("withSocket")))
                return
            }
            do throws(ZMQError) {
                waiter.finish(.success(try body(entry.socket)))
            } catch {
                waiter.finish(.failure(error))
            }
        }
    }

    /// Binds on the loop thread and returns the resolved endpoint (`tcp://127.0.0.1:*` gets its port).
    public func bind(_ endpoint: String) async throws(ZMQError) -> String {
        try await withSocket { (socket) throws(ZMQError) -> String in
            try socket.bind(endpoint)
            return try socket.lastEndpoint
        }
    }

    /// Connects on the loop thread.
    public func connect(_ endpoint: String) async throws(ZMQError) {
        try await withSocket { (socket) throws(ZMQError) in try socket.connect(endpoint) }
    }

    /// Closes the socket on the loop thread, failing its waiting operations. Idempotent; returns
    /// at once when the loop has already stopped (it closed the socket then).
    public func close() async {
        let id = self.id
        _ = try? await wait("close", timeout: nil) { (core: LoopCore, waiter: Waiter<Void>, _) in
            core.close(id: id, with: nil)
            waiter.finish(.success(()))
        }
    }

    private func wait<T: Sendable>(
        _ operation: String,
        timeout: Duration?,
        register: @escaping @Sendable (LoopCore, Waiter<T>, ContinuousClock.Instant?) -> Void
    ) async throws(ZMQError) -> T {
        let waiter = Waiter<T>()
        let deadline = timeout.map { ContinuousClock.now.advanced(by: $0) }
        let shared = loop.shared
        let result: Result<T, ZMQError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: Waiter<T>.Continuation) in
                guard waiter.install(continuation) else { return }
                if !shared.submit({ core in register(core, waiter, deadline) }) {
                    waiter.finish(.failure(LoopCore.closedError(operation)))
                }
            }
        } onCancel: {
            if waiter.finish(.failure(ZMQError(code: ECANCELED, operation: operation, detail: "task cancelled"))) {
                shared.wake.wake()  // let the loop drop the waiter and stop polling for it
            }
        }
        return try result.get()
    }
}
