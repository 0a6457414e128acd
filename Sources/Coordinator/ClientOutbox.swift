import CaravanCore
import CaravanWire
import Logging

/// A message for a client, as the coordinator decided it.
enum ClientReply: Sendable {
    /// An event of a job's stream.
    case event(JobEventMessage)
    /// A job's status.
    case status(JobStatus)
    /// An error reply (`code` as in docs/protocol.md: "not_found", "forbidden", ...).
    case error(code: String, message: String)
    /// An answer already in wire form (admin reports, hello).
    case message(Caravan_V1_Envelope.OneOf_Body)
}

/// Everything the coordinator sends to clients, in the order it was decided: the job desk queues
/// a job's events while it holds its lock (so that a re-attached client gets missed tokens and new
/// ones in order, none twice), and the ``ClientEndpoint`` queues its replies; the endpoint sends
/// them one by one. Bounded: beyond `limit` messages are dropped (counted and logged).
final class ClientOutbox: Sendable {
    /// Messages queued at most.
    let limit: Int
    private let logger: Logger
    private let stream: AsyncStream<(PeerID, ClientReply, UInt64)>
    private let input: AsyncStream<(PeerID, ClientReply, UInt64)>.Continuation
    /// Messages in the outbox now, and dropped because it was full.
    private let depth = LockedValue<(queued: Int, dropped: Int)>((0, 0))

    /// An empty outbox holding at most `limit` messages.
    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
        (stream, input) = AsyncStream.makeStream()
    }

    /// Messages not yet handed to the client socket (queued, or being sent now).
    var queued: Int { depth.withLock { $0.queued } }

    /// Queues `reply` for `peer` (answering request `requestID`, 0 for none); drops it (counted,
    /// logged) when the outbox is full.
    func enqueue(_ peer: PeerID, _ reply: ClientReply, requestID: UInt64 = 0) {
        let dropped = depth.withLock { d -> Int? in
            guard d.queued < limit else {
                d.dropped += 1
                return d.dropped
            }
            d.queued += 1
            return nil
        }
        if let dropped {
            if dropped == 1 || dropped % 1000 == 0 {
                logger.error("the client outbox is full; dropped a message", metadata: ["limit": "\(limit)", "dropped": "\(dropped)"])
            }
            return
        }
        // After ``finish()`` nothing is sent any more: the message does not count as queued.
        if case .terminated = input.yield((peer, reply, requestID)) { depth.withLock { $0.queued -= 1 } }
    }

    /// Queues a job's events.
    func enqueue(_ events: [JobEventMessage]) {
        for e in events { enqueue(e.peer, .event(e)) }
    }

    /// The queued messages, in order, until ``finish()``; the reader calls ``sent()`` for each
    /// once it has handed it to the socket (or given up on it).
    var messages: AsyncStream<(PeerID, ClientReply, UInt64)> { stream }

    /// One message left the outbox.
    func sent() { depth.withLock { $0.queued -= 1 } }

    /// Ends the stream once everything queued is taken.
    func finish() { input.finish() }

    /// Takes no more messages and waits until the reader has sent everything queued, or `limit`
    /// has passed; returns whether everything was sent. A stopping coordinator calls it after its
    /// jobs ended: their last events (`finished`) are queued, and closing the client socket
    /// before they are sent would leave their clients waiting for an end that never comes.
    func flush(within limit: Duration) async -> Bool {
        finish()
        let deadline = ContinuousClock.now + limit
        while queued > 0 {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }
}
