import Synchronization

/// A bounded FIFO of deliveries with one waiting receiver at a time and senders waiting for room:
/// the queue behind each ``InMemoryTransport``. Items may carry the instant before which they must
/// not be handed out (a delayed link); an item holds back the ones behind it, as a byte stream does.
final class Inbox: Sendable {
    struct Item: Sendable {
        let delivery: Delivery
        let readyAt: ContinuousClock.Instant?
    }

    private struct State {
        var items: [Item] = []
        var receiver: (id: Int, continuation: CheckedContinuation<Item, any Error>)?
        var spaceWaiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var closed = false
        var nextID = 0
    }

    /// Messages held at most before senders wait.
    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Queues `item`, waiting while the queue is full (at most `timeout`). Returns at once (the item
    /// dropped) when the inbox is closed: a message to a peer that went away is lost.
    func put(_ item: Item, timeout: Duration?) async throws(TransportError) {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            enum Outcome { case done, full }
            let outcome = state.withLock { s -> Outcome in
                if s.closed { return .done }
                if let receiver = s.receiver {
                    s.receiver = nil
                    receiver.continuation.resume(returning: item)
                    return .done
                }
                guard s.items.count < capacity else { return .full }
                s.items.append(item)
                return .done
            }
            if case .done = outcome { return }
            if let deadline, ContinuousClock.now >= deadline { throw TransportError(.timedOut, "send: the peer's queue is full") }
            try await waitForSpace(until: deadline)
        }
    }

    /// Takes the next item, waiting for one.
    func take() async throws(TransportError) -> Item {
        let ready = state.withLock { s -> Result<Item, TransportError>? in
            if s.closed { return .failure(TransportError(.closed, "receive: closed")) }
            guard !s.items.isEmpty else { return nil }
            let item = s.items.removeFirst()
            if let waiter = s.spaceWaiters.first {
                s.spaceWaiters.removeFirst()
                waiter.continuation.resume()
            }
            return .success(item)
        }
        if let ready { return try ready.get() }
        do {
            return try await waitForItem()
        } catch let error as TransportError {
            throw error
        } catch {
            throw TransportError(.failed, "\(error)")
        }
    }

    /// Closes the inbox: the waiting receiver and senders fail, queued items are dropped.
    func close() {
        let (receiver, senders) = state.withLock { s in
            s.closed = true
            s.items = []
            defer { s.receiver = nil; s.spaceWaiters = [] }
            return (s.receiver, s.spaceWaiters)
        }
        receiver?.continuation.resume(throwing: TransportError(.closed, "receive: closed"))
        for w in senders { w.continuation.resume(throwing: TransportError(.closed, "send: closed")) }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    private func waitForItem() async throws -> Item {
        let id = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Item, any Error>) in
                let immediate = state.withLock { s -> Result<Item, TransportError>? in
                    if s.closed { return .failure(TransportError(.closed, "receive: closed")) }
                    if !s.items.isEmpty { return .success(s.items.removeFirst()) }
                    if s.receiver != nil { return .failure(TransportError(.misuse, "receive: another receive is waiting")) }
                    s.receiver = (id, c)
                    return nil
                }
                if let immediate {
                    c.resume(with: immediate.mapError { $0 as any Error })
                } else if Task.isCancelled {
                    cancelReceiver(id)
                }
            }
        } onCancel: {
            cancelReceiver(id)
        }
    }

    private func cancelReceiver(_ id: Int) {
        let receiver = state.withLock { s -> CheckedContinuation<Item, any Error>? in
            guard let r = s.receiver, r.id == id else { return nil }
            s.receiver = nil
            return r.continuation
        }
        receiver?.resume(throwing: TransportError(.cancelled, "receive: task cancelled"))
    }

    private func waitForSpace(until deadline: ContinuousClock.Instant?) async throws(TransportError) {
        let id = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await withTaskCancellationHandler {
                        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                            let now = self.state.withLock { s -> Bool in
                                if s.closed || s.items.count < self.capacity { return true }
                                s.spaceWaiters.append((id, c))
                                return false
                            }
                            if now { c.resume() } else if Task.isCancelled { self.cancelSpaceWaiter(id) }
                        }
                    } onCancel: {
                        self.cancelSpaceWaiter(id)
                    }
                }
                if let deadline {
                    group.addTask {
                        try await Task.sleep(until: deadline, clock: .continuous)
                        throw TransportError(.timedOut, "send: the peer's queue is full")
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        } catch let error as TransportError {
            throw error
        } catch is CancellationError {
            throw TransportError(.cancelled, "send: task cancelled")
        } catch {
            throw TransportError(.failed, "\(error)")
        }
    }

    private func cancelSpaceWaiter(_ id: Int) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            guard let i = s.spaceWaiters.firstIndex(where: { $0.id == id }) else { return nil }
            return s.spaceWaiters.remove(at: i).continuation
        }
        waiter?.resume(throwing: TransportError(.cancelled, "send: task cancelled"))
    }
}
