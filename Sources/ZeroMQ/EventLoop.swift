import CZeroMQ
import Foundation
import Synchronization

/// A dedicated thread that owns sockets and bridges them to Swift concurrency.
///
/// The thread blocks in `zmq_poll` on the sockets that have waiting operations plus a wake-up pipe,
/// with a timeout only when an operation has a deadline: it never busy-waits. Tasks hand operations to
/// it through ``AsyncSocket``; all socket calls happen on this thread.
///
/// ``shutdown()`` closes every socket it owns (failing waiting operations with a "closed" error) and
/// joins the thread; after that, terminating the context returns at once.
public final class EventLoop: Sendable {
    /// The context the loop's sockets belong to.
    public let context: Context
    let shared: LoopShared

    /// Starts a loop thread named `name` for sockets of `context`.
    public init(context: Context, name: String = "zmq-event-loop") throws(ZMQError) {
        self.context = context
        shared = LoopShared(wake: try WakePipe())
        let core = LoopCore(shared: shared)
        let thread = Thread { core.run() }
        thread.name = name
        shared.setLoopThread(ObjectIdentifier(thread))
        thread.start()
    }

    deinit { shutdown() }

    /// True until ``shutdown()`` was requested (or the context was terminated under the loop).
    public var isRunning: Bool { shared.state.withLock { !$0.stopRequested } }

    /// Closes all sockets of the loop, fails their waiting operations, and waits for the thread to
    /// end (unless called on the loop thread itself). Idempotent.
    public func shutdown() {
        let first = shared.state.withLock { state in
            defer { state.stopRequested = true }
            return !state.stopRequested
        }
        if first { shared.wake.wake() }
        if !shared.isLoopThread { shared.waitDone() }
    }
}

/// State shared between callers and the loop thread.
final class LoopShared: Sendable {
    struct State {
        var commands: [@Sendable (LoopCore) -> Void] = []
        var stopRequested = false
    }

    let state = Mutex(State())
    let wake: WakePipe
    private let finished = Mutex(false)
    private let done = DispatchSemaphore(value: 0)
    private let loopThread = Mutex<ObjectIdentifier?>(nil)
    private let nextID = Atomic<Int>(1)

    init(wake: WakePipe) { self.wake = wake }

    /// Queues `command` for the loop thread; false when the loop has stopped.
    func submit(_ command: @escaping @Sendable (LoopCore) -> Void) -> Bool {
        let accepted = state.withLock { state in
            guard !state.stopRequested else { return false }
            state.commands.append(command)
            return true
        }
        if accepted { wake.wake() }
        return accepted
    }

    /// Takes the queued commands and the stop flag.
    func takeCommands() -> ([@Sendable (LoopCore) -> Void], Bool) {
        state.withLock { state in
            defer { state.commands = [] }
            return (state.commands, state.stopRequested)
        }
    }

    /// Marks the loop stopped (rejecting new commands), e.g. after `ETERM`.
    func markStopped() { state.withLock { $0.stopRequested = true } }

    func makeID() -> Int { nextID.wrappingAdd(1, ordering: .relaxed).oldValue }

    func setLoopThread(_ id: ObjectIdentifier) { loopThread.withLock { $0 = id } }

    var isLoopThread: Bool {
        let current = ObjectIdentifier(Thread.current)
        return loopThread.withLock { $0 == current }
    }

    func signalDone() {
        finished.withLock { $0 = true }
        done.signal()
    }

    /// Waits until the loop thread has ended (returns at once afterwards).
    func waitDone() {
        if finished.withLock({ $0 }) { return }
        done.wait()
        done.signal()  // let other waiters through too
    }
}

/// The loop thread's state; only the loop thread touches it.
final class LoopCore: @unchecked Sendable {
    typealias Deadline = ContinuousClock.Instant

    struct PendingSend {
        let waiter: Waiter<Void>
        let frames: [Message]
        let deadline: Deadline?
    }

    struct PendingReceive {
        let waiter: Waiter<[Message]>
        let deadline: Deadline?
    }

    final class Entry {
        let socket: Socket
        var sends: [PendingSend] = []
        var receives: [PendingReceive] = []
        /// Messages received for a waiter that was cancelled at the same moment.
        var backlog: [[Message]] = []
        /// After a send fails with EAGAIN although POLLOUT was reported, retry no earlier than this.
        var stalledUntil: Deadline?
        /// The connection watch of a ROUTER (``ConnectionWatch``), read before each receive.
        let watch: WatchState?
        init(socket: Socket, watch: WatchState? = nil) {
            self.socket = socket
            self.watch = watch
        }
    }

    let shared: LoopShared
    var entries: [Int: Entry] = [:]
    private let clock = ContinuousClock()
    /// Back-off after a send that failed despite POLLOUT (rare, e.g. ROUTER at its high-water mark).
    private let stallBackoff = Duration.milliseconds(5)

    init(shared: LoopShared) { self.shared = shared }

    static func closedError(_ op: String) -> ZMQError {
        ZMQError(code: ZMQErrorCode.notSocket, operation: op, detail: "socket closed")
    }

    func run() {
        defer { shared.signalDone() }
        while true {
            var poller = Poller()
            poller.add(fileDescriptor: shared.wake.readFD, events: .pollIn)
            var nearest: Deadline?
            func consider(_ d: Deadline?) {
                if let d, nearest.map({ d < $0 }) ?? true { nearest = d }
            }
            let now = clock.now
            for entry in entries.values {
                entry.receives.removeAll { $0.waiter.isDone }
                entry.sends.removeAll { $0.waiter.isDone }
                var events: PollEvents = []
                if !entry.receives.isEmpty { events.insert(.pollIn) }
                if !entry.sends.isEmpty {
                    if let stall = entry.stalledUntil, stall > now { consider(stall) } else { events.insert(.pollOut) }
                }
                for r in entry.receives { consider(r.deadline) }
                for s in entry.sends { consider(s.deadline) }
                if !events.isEmpty { poller.add(entry.socket, events: events) }
                // A watch's monitor is read whenever it has events, messages awaited or not.
                if let watch = entry.watch { poller.add(watch.monitor, events: .pollIn) }
            }
            var timeout = -1
            if let nearest {
                let remaining = now.duration(to: nearest)
                let ms = remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000
                timeout = max(0, Int(ms) + 1)
            }
            do {
                try poller.poll(timeoutMilliseconds: timeout)
            } catch {
                // ETERM (context shut down) or a broken socket: nothing can work any more.
                shared.markStopped()
                closeAll(with: error)
                failQueuedCommands()
                return
            }
            shared.wake.drain()
            let (commands, stop) = shared.takeCommands()
            for command in commands { command(self) }
            if stop {
                closeAll(with: nil)
                return
            }
            let after = clock.now
            for entry in entries.values {
                entry.watch?.drain(now: after)
                service(entry, now: after)
                expire(entry, now: after)
            }
        }
    }

    /// Runs commands queued after the loop died so that their waiters learn it (they fail on the
    /// missing socket entries).
    private func failQueuedCommands() {
        let (commands, _) = shared.takeCommands()
        for command in commands { command(self) }
    }

    private func service(_ entry: Entry, now: Deadline) {
        while !entry.receives.isEmpty {
            do {
                // The watch learns of connections accepted and closed before this message was
                // queued, so the message is put down to the connection it came on.
                entry.watch?.drain(now: clock.now)
                let frames = try entry.socket.receive(dontWait: true)
                entry.watch?.observe(frames, now: clock.now)
                deliver(frames, to: entry)
            } catch {
                if !error.isTimeout {
                    for r in entry.receives { r.waiter.finish(.failure(error)) }
                    entry.receives = []
                }
                break
            }
        }
        var sentAny = false
        while let first = entry.sends.first {
            if first.waiter.isDone { entry.sends.removeFirst(); continue }
            do {
                try entry.socket.send(first.frames, dontWait: true)
                entry.sends.removeFirst()
                first.waiter.finish(.success(()))
                sentAny = true
                entry.stalledUntil = nil
            } catch {
                if error.isTimeout {
                    // Not writable now. Poll for POLLOUT; if POLLOUT keeps being reported while sends
                    // fail, back off briefly instead of spinning.
                    if !sentAny, let events = try? entry.socket.events, events.contains(.pollOut) {
                        entry.stalledUntil = now + stallBackoff
                    }
                    break
                }
                entry.sends.removeFirst()
                first.waiter.finish(.failure(error))
            }
        }
    }

    func deliver(_ frames: [Message], to entry: Entry) {
        while !entry.receives.isEmpty {
            let r = entry.receives.removeFirst()
            if r.waiter.finish(.success(frames)) { return }
        }
        entry.backlog.append(frames)
    }

    private func expire(_ entry: Entry, now: Deadline) {
        entry.receives.removeAll { r in
            guard let d = r.deadline, d <= now else { return false }
            r.waiter.finish(.failure(ZMQError(code: EAGAIN, operation: "receive", detail: "timed out")))
            return true
        }
        entry.sends.removeAll { s in
            guard let d = s.deadline, d <= now else { return false }
            s.waiter.finish(.failure(ZMQError(code: EAGAIN, operation: "send", detail: "timed out")))
            return true
        }
    }

    /// Closes a socket's entry, failing its waiting operations with `error` (or "closed").
    func close(id: Int, with error: ZMQError?) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        for r in entry.receives { r.waiter.finish(.failure(error ?? Self.closedError("receive"))) }
        for s in entry.sends { s.waiter.finish(.failure(error ?? Self.closedError("send"))) }
        entry.socket.close()
        entry.watch?.close()
    }

    private func closeAll(with error: ZMQError?) {
        for id in Array(entries.keys) { close(id: id, with: error) }
    }
}
