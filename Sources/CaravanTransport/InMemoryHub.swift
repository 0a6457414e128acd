import Synchronization
import ZeroMQ

/// What happens to messages on a link between two nodes of an ``InMemoryHub``.
public enum LinkFault: Sendable, Equatable {
    /// Every message is lost.
    case drop
    /// Every message arrives this much later (and holds back the ones behind it).
    case delay(Duration)
}

/// Named endpoints in one process, joined by ``InMemoryTransport``s: the in-memory twin of a
/// ZeroMQ network, for tests that run a coordinator and its workers in one process.
///
/// Each transport belongs to a *node* (a name such as `"coordinator"` or `"worker-2"`), so that
/// faults can be injected the way they happen between machines: messages on a link dropped or
/// delayed (``setFault(from:to:_:)``), a node killed (``kill(_:)``: its endpoints vanish, its
/// transports close, messages to it are lost, and the bound sides it was connected to see its
/// connections close, as the kernel closes a killed process's sockets) or paused (``pause(_:)``:
/// like `SIGSTOP`, it neither reads nor sends until ``resume(_:)``). A connection carries the identity a CURVE handshake would
/// have proven (the `User-Id` of ZAP), set when it is made. Queues are bounded; a sender waits for
/// room as on a ZeroMQ socket at its high-water mark.
public final class InMemoryHub: Sendable {
    struct Binding {
        let node: String
        let inbox: Inbox
        /// Where the bound side's connection events go.
        let events: AsyncStream<PeerConnectionEvent>.Continuation
        var connections: [[UInt8]: Connection] = [:]
    }

    struct Connection {
        let node: String
        let identity: String?
        let inbox: Inbox
    }

    struct Link: Hashable {
        let from: String
        let to: String
    }

    struct State {
        var bindings: [String: Binding] = [:]
        var faults: [Link: LinkFault] = [:]
        var paused: Set<String> = []
        var killed: Set<String> = []
        var delivered: [Link: Int] = [:]
        var nextRoutingID: UInt32 = 1
    }

    /// Messages an inbox holds before its senders wait.
    public let capacity: Int
    let state = Mutex(State())

    /// An empty hub whose queues hold `capacity` messages each.
    public init(capacity: Int = 1000) { self.capacity = capacity }

    /// Binds `endpoint` for `node`: the many-peer side of the endpoint. Fails with `.misuse` when
    /// the endpoint is bound already or the node was killed.
    public func bind(_ endpoint: String, node: String) throws(TransportError) -> InMemoryTransport {
        let inbox = Inbox(capacity: capacity)
        let (events, sink) = AsyncStream.makeStream(of: PeerConnectionEvent.self, bufferingPolicy: .bufferingNewest(4096))
        let error = state.withLock { s -> TransportError? in
            if s.killed.contains(node) { return TransportError(.misuse, "bind \(endpoint): node \(node) was killed") }
            if let b = s.bindings[endpoint], !b.inbox.isClosed { return TransportError(.misuse, "bind \(endpoint): address in use") }
            s.bindings[endpoint] = Binding(node: node, inbox: inbox, events: sink)
            return nil
        }
        if let error {
            sink.finish()
            throw error
        }
        return InMemoryTransport(hub: self, node: node, side: .bound(endpoint), inbox: inbox, events: events)
    }

    /// Connects `node` to `endpoint`: the one-peer side. `identity` is what the bound side sees as
    /// the sender's authenticated key; `routingID` is kept across re-made connections by the
    /// worker's control socket (a new one is made up when nil). Connecting before the endpoint is
    /// bound works, as in ZeroMQ: messages sent while nobody is bound are lost.
    public func connect(_ endpoint: String, node: String, identity: String? = nil,
                        routingID: [UInt8]? = nil) -> InMemoryTransport {
        let inbox = Inbox(capacity: capacity)
        let id = state.withLock { s -> [UInt8] in
            if let routingID { return routingID }
            defer { s.nextRoutingID += 1 }
            return withUnsafeBytes(of: s.nextRoutingID.bigEndian) { [0] + Array($0) }
        }
        let connection = Connection(node: node, identity: identity, inbox: inbox)
        state.withLock { s in
            if s.killed.contains(node) { inbox.close() }
            guard s.bindings[endpoint] != nil else { return }
            s.bindings[endpoint]?.connections[id] = connection
            s.bindings[endpoint]?.events.yield(.opened(peer: id))
        }
        return InMemoryTransport(hub: self, node: node, side: .connected(endpoint, routingID: id, connection), inbox: inbox)
    }

    /// A dialer connecting as `node` with `identity`.
    public func dialer(node: String, identity: String? = nil) -> InMemoryDialer {
        InMemoryDialer(hub: self, node: node, identity: identity)
    }

    // MARK: Faults

    /// Sets (or with nil clears) the fault of messages sent by `from` to `to` (node names).
    public func setFault(from: String, to: String, _ fault: LinkFault?) {
        state.withLock { $0.faults[Link(from: from, to: to)] = fault }
    }

    /// Kills `node`: its bound endpoints vanish, all its transports close (their waiting
    /// operations fail with `.closed`), messages sent to it are lost from now on.
    public func kill(_ node: String) {
        let inboxes = state.withLock { s -> [Inbox] in
            s.killed.insert(node)
            var closing: [Inbox] = []
            for (endpoint, b) in s.bindings {
                if b.node == node {
                    closing.append(b.inbox)
                    b.events.finish()
                    s.bindings[endpoint] = nil
                    continue
                }
                for (id, c) in b.connections where c.node == node {
                    closing.append(c.inbox)
                    s.bindings[endpoint]?.connections[id] = nil
                    b.events.yield(.closed(peer: id, cause: .peerEnded))
                }
            }
            return closing
        }
        for inbox in inboxes { inbox.close() }
    }

    /// Whether `node` was killed.
    public func isKilled(_ node: String) -> Bool { state.withLock { $0.killed.contains(node) } }

    /// Pauses `node`: its transports neither hand out messages nor send until ``resume(_:)``
    /// (messages to it queue up, then their senders wait).
    public func pause(_ node: String) { state.withLock { _ = $0.paused.insert(node) } }

    /// Lets a paused node go on.
    public func resume(_ node: String) { state.withLock { _ = $0.paused.remove(node) } }

    /// Messages delivered (queued at the receiver) from node `from` to node `to` so far.
    public func delivered(from: String, to: String) -> Int {
        state.withLock { $0.delivered[Link(from: from, to: to)] ?? 0 }
    }

    // MARK: For the transports

    func isPaused(_ node: String) -> Bool { state.withLock { $0.paused.contains(node) } }

    /// Where a message from `node` goes (nil: lost) and when it may be handed out.
    func route(from node: String, toBound endpoint: String, routingID: [UInt8],
               connection: Connection) -> (Inbox, ContinuousClock.Instant?)? {
        state.withLock { s in
            guard let b = s.bindings[endpoint], !s.killed.contains(b.node) else { return nil }
            // A binding made after this connection (a restarted peer) learns it now, as ZeroMQ
            // reconnects by itself.
            if b.connections[routingID] == nil {
                s.bindings[endpoint]?.connections[routingID] = connection
                b.events.yield(.opened(peer: routingID))
            }
            return admit(&s, Link(from: node, to: b.node), inbox: b.inbox)
        }
    }

    /// Where a message from the bound side of `endpoint` to `routingID` goes (nil: lost).
    func route(from node: String, bound endpoint: String, to routingID: [UInt8]) -> (Inbox, ContinuousClock.Instant?)? {
        state.withLock { s in
            guard let c = s.bindings[endpoint]?.connections[routingID], !s.killed.contains(c.node) else { return nil }
            return admit(&s, Link(from: node, to: c.node), inbox: c.inbox)
        }
    }

    private func admit(_ s: inout State, _ link: Link, inbox: Inbox) -> (Inbox, ContinuousClock.Instant?)? {
        switch s.faults[link] {
        case .drop?:
            return nil
        case .delay(let d)?:
            s.delivered[link, default: 0] += 1
            return (inbox, ContinuousClock.now + d)
        case nil:
            s.delivered[link, default: 0] += 1
            return (inbox, nil)
        }
    }

    /// Forgets a closed transport.
    func closed(_ side: InMemoryTransport.Side, inbox: Inbox) {
        state.withLock { s in
            switch side {
            case .bound(let endpoint):
                if let b = s.bindings[endpoint], b.inbox === inbox {
                    b.events.finish()
                    s.bindings[endpoint] = nil
                }
            case .connected(let endpoint, let id, _):
                if let b = s.bindings[endpoint], b.connections[id]?.inbox === inbox {
                    s.bindings[endpoint]?.connections[id] = nil
                    b.events.yield(.closed(peer: id, cause: .peerEnded))
                }
            }
        }
        inbox.close()
    }
}

/// One side of a link of an ``InMemoryHub`` (see ``Transport``): messages are queued in the
/// receiver's bounded inbox as they are, the frames shared, not copied.
public final class InMemoryTransport: Transport {
    enum Side: Sendable {
        case bound(String)
        case connected(String, routingID: [UInt8], InMemoryHub.Connection)
    }

    /// The node the transport belongs to.
    public let node: String
    let side: Side
    private let hub: InMemoryHub
    private let inbox: Inbox
    private let events: AsyncStream<PeerConnectionEvent>?

    init(hub: InMemoryHub, node: String, side: Side, inbox: Inbox, events: AsyncStream<PeerConnectionEvent>? = nil) {
        self.hub = hub
        self.node = node
        self.side = side
        self.inbox = inbox
        self.events = events
    }

    /// A bound side's connection events: a peer connected (or a binding made after its
    /// connection learned it with its first message), or its connection closed (its node was
    /// killed, or it closed the transport). A paused node's connection stays open.
    public func connectionEvents() -> AsyncStream<PeerConnectionEvent> {
        events ?? AsyncStream { $0.finish() }
    }

    /// The routing id the bound side sees for this connection (nil for a bound side).
    public var routingID: [UInt8]? {
        if case .connected(_, let id, _) = side { return id }
        return nil
    }

    public func send(_ frames: [Message], to peer: [UInt8]?, timeout: Duration?) async throws(TransportError) {
        guard !frames.isEmpty else { throw TransportError(.misuse, "a message needs at least one frame") }
        try await waitWhilePaused()
        guard !inbox.isClosed else { throw TransportError(.closed, "send: closed") }
        let target: (Inbox, ContinuousClock.Instant?)?
        let delivery: Delivery
        switch (side, peer) {
        case (.bound(let endpoint), let peer?):
            target = hub.route(from: node, bound: endpoint, to: peer)
            delivery = Delivery(sender: nil, identity: nil, frames: frames)
        case (.connected(let endpoint, let id, let connection), nil):
            target = hub.route(from: node, toBound: endpoint, routingID: id, connection: connection)
            delivery = Delivery(sender: id, identity: connection.identity, frames: frames)
        case (.bound, nil):
            throw TransportError(.misuse, "a bound side sends to a routing id")
        case (.connected, _?):
            throw TransportError(.misuse, "a connected side has one peer")
        }
        guard let (destination, readyAt) = target else { return }
        try await destination.put(Inbox.Item(delivery: delivery, readyAt: readyAt), timeout: timeout)
    }

    public func receive() async throws(TransportError) -> Delivery {
        try await waitWhilePaused()
        let item = try await inbox.take()
        if let readyAt = item.readyAt, readyAt > .now {
            do {
                try await Task.sleep(until: readyAt, clock: .continuous)
            } catch {
                throw TransportError(.cancelled, "receive: task cancelled")
            }
        }
        try await waitWhilePaused()
        return item.delivery
    }

    public func close() async { hub.closed(side, inbox: inbox) }

    /// A paused node does nothing until resumed (checked every millisecond).
    private func waitWhilePaused() async throws(TransportError) {
        while hub.isPaused(node) {
            if inbox.isClosed { throw TransportError(.closed, "closed while paused") }
            do {
                try await Task.sleep(for: .milliseconds(1))
            } catch {
                throw TransportError(.cancelled, "task cancelled while paused")
            }
        }
    }
}

/// Connects to endpoints of an ``InMemoryHub`` as one node, with one identity.
public struct InMemoryDialer: TransportDialer {
    /// The hub.
    public let hub: InMemoryHub
    /// The node the connections belong to.
    public let node: String
    /// The identity the bound sides see.
    public let identity: String?

    /// A dialer for `node` on `hub` proving `identity`.
    public init(hub: InMemoryHub, node: String, identity: String? = nil) {
        self.hub = hub
        self.node = node
        self.identity = identity
    }

    public func dial(_ endpoint: String, serverKey: String) throws(TransportError) -> any Transport {
        if hub.isKilled(node) { throw TransportError(.closed, "dial \(endpoint): node \(node) was killed") }
        return hub.connect(endpoint, node: node, identity: identity)
    }
}
