import CaravanCore
import CaravanTransport
import CaravanWire
import Logging
import ZeroMQ

/// The coordinator's client link (a ROUTER, or its in-memory twin): reads `JobSubmit`,
/// `JobStatusRequest`, `JobCancel`, `JobAttach`, admin, drain and hello requests, checks what the
/// sender's proven key may do, converts job requests to CaravanCore values for the ``JobDesk`` and
/// its answers back to `jobs.proto` messages, and sends everything queued in the ``ClientOutbox``.
/// The wire stops here: nothing behind it sees a `Caravan_V1_*` job message.
final class ClientEndpoint: Sendable {
    /// What a drain request gets: whether the worker is being drained, and why (not).
    typealias Drain = @Sendable (_ workerID: String) async -> (ok: Bool, message: String)

    private let link: any Transport
    private let codec: WireCodec
    private let desk: JobDesk
    private let outbox: ClientOutbox
    /// Who may do what (nil in plain mode: everyone everything).
    private let access: AccessList?
    /// Answers status and plan preview requests (nil: "the coordinator is starting").
    private let admin: AdminDesk?
    /// Drains a worker (nil: "the coordinator is starting").
    private let drain: Drain?
    private let logger: Logger
    /// Lines a peer can cause, within a budget (``LogLimiter``).
    private let limited: LogLimiter

    /// An endpoint on `link` in front of `desk`, sending what `outbox` holds.
    init(link: any Transport, codec: WireCodec, desk: JobDesk, outbox: ClientOutbox, access: AccessList?,
         admin: AdminDesk? = nil, drain: Drain? = nil, logger: Logger) {
        self.link = link
        self.codec = codec
        self.desk = desk
        self.outbox = outbox
        self.access = access
        self.admin = admin
        self.drain = drain
        self.logger = logger
        self.limited = LogLimiter(logger: logger)
    }

    // MARK: Sending

    /// Sends what is queued for clients, until the outbox is finished.
    func runOutbox() async {
        for await (peer, reply, requestID) in outbox.messages {
            defer { outbox.sent() }
            do {
                let frames: [Message]
                do {
                    frames = try codec.encode(Self.wire(reply), requestID: requestID)
                } catch {
                    // A reply that cannot be encoded (too large, invalid) must not leave its client
                    // waiting: it gets an error reply instead.
                    logger.error("could not encode a reply to a client", metadata: ["reason": "\(error)"])
                    frames = try codec.encode(Self.wire(.error(code: "internal", message: "the coordinator could not encode its reply: \(error)")),
                                              requestID: requestID)
                }
                try await link.send(frames, to: peer.bytes, timeout: .seconds(5))
            } catch {
                limited.warning("could not send to a client", key: "\(peer)", metadata: ["reason": "\(error)"])
            }
        }
    }

    /// The wire message of a reply.
    static func wire(_ reply: ClientReply) -> Caravan_V1_Envelope.OneOf_Body {
        switch reply {
        case .event(let m):
            return .jobEvent(Caravan_V1_JobEvent(m.event, job: m.job, clientRequestID: m.clientRequestID, sequence: m.sequence))
        case .status(let s):
            return .jobStatus(Caravan_V1_JobStatus(s))
        case let .error(code, message):
            var e = Caravan_V1_ErrorReply()
            e.code = code
            e.message = message
            return .error(e)
        case .message(let body):
            return body
        }
    }

    private func reply(_ reply: ClientReply, to peer: PeerID, requestID: UInt64) {
        outbox.enqueue(peer, reply, requestID: requestID)
    }

    private func notFound(_ job: String, to peer: PeerID, requestID: UInt64) {
        reply(.error(code: "not_found", message: "no job \(job)"), to: peer, requestID: requestID)
    }

    // MARK: Receiving

    /// Handles one message from the client link.
    func handle(_ message: Delivery) async {
        let peer = PeerID(message.sender ?? [])
        let body: Caravan_V1_Envelope.OneOf_Body
        let requestID: UInt64
        do {
            guard case .message(let b, let r) = try codec.decode(message.frames) else {
                limited.warning("client socket: dropped an unexpected data message", key: message.identity ?? "\(peer)")
                return
            }
            (body, requestID) = (b, r)
        } catch {
            limited.warning("client socket: dropped a bad frame", key: message.identity ?? "\(peer)", metadata: ["reason": "\(error)"])
            reply(.error(code: "invalid_message", message: "\(error)"), to: peer, requestID: 0)
            return
        }
        // Roles per message (docs/protocol.md): ZAP admits only client and admin keys here; a
        // client touches its own jobs only (another's are "not found"), admins everything.
        let caller = AccessList.caller(identity: message.identity, access: access)
        guard !caller.roles.intersection([.client, .admin]).isEmpty else {
            limited.warning("client socket: refused a message from a key that is neither client nor admin", key: caller.key,
                            metadata: ["key": "\(caller.key)", "roles": "\(caller.roles)"])
            reply(.message(AdminDesk.forbidden("this key is not a client's (authorized_clients) or an admin's (authorized_admins)")),
                  to: peer, requestID: requestID)
            return
        }
        switch body {
        case .jobSubmit(let m): await submit(m, from: peer, caller: caller, requestID: requestID)
        case .jobStatusRequest(let m):
            guard let job = JobID(m.jobID), let status = desk.status(of: job, caller: caller) else {
                return notFound(m.jobID, to: peer, requestID: requestID)
            }
            reply(.status(status), to: peer, requestID: requestID)
        case .jobCancel(let m):
            guard let job = JobID(m.jobID) else { return notFound(m.jobID, to: peer, requestID: requestID) }
            switch await desk.cancel(job, caller: caller) {
            case .cancelling: break
            case .notFound: notFound(m.jobID, to: peer, requestID: requestID)
            case .status(let status): reply(.status(status), to: peer, requestID: requestID)
            }
        case .jobAttach(let m):
            guard let job = JobID(m.jobID),
                  desk.attach(job, receivedTokens: Int(m.receivedTokens), peer: peer, caller: caller) else {
                return notFound(m.jobID, to: peer, requestID: requestID)
            }
        case .clusterStatusRequest, .planPreviewRequest:
            reply(.message(admin?.answer(body, caller: caller) ?? AdminDesk.notReady), to: peer, requestID: requestID)
        case .drainRequest where !caller.roles.contains(.admin):
            limited.warning("client socket: refused a drain request from a key that is not an admin's", key: caller.key,
                            metadata: ["key": "\(caller.key)"])
            reply(.message(AdminDesk.forbidden("draining a worker is for admin keys only (authorized_admins)")), to: peer, requestID: requestID)
        case .drainRequest(let m):
            guard let drain else { return reply(.message(AdminDesk.notReady), to: peer, requestID: requestID) }
            let (ok, text) = await drain(m.workerID)
            var result = Caravan_V1_AdminResult()
            result.ok = ok
            result.message = text
            reply(.message(.adminResult(result)), to: peer, requestID: requestID)
        case .hello:
            var hello = Caravan_V1_Hello()
            hello.protocolVersion = WireProtocol.version
            hello.role = .coordinator
            hello.nodeID = "coordinator"
            reply(.message(.hello(hello)), to: peer, requestID: requestID)
        default:
            reply(.error(code: "unsupported",
                         message: "the client socket takes JobSubmit, JobStatusRequest, JobCancel, JobAttach and admin requests"),
                  to: peer, requestID: requestID)
        }
    }

    /// A job request: converted (a request that does not convert is refused as invalid) and handed
    /// to the desk; a refusal goes back as the job's only event.
    private func submit(_ m: Caravan_V1_JobSubmit, from peer: PeerID, caller: Caller, requestID: UInt64) async {
        let outcome: JobDesk.Submitted
        do {
            outcome = await desk.submit(try JobRequest(wire: m), from: peer, caller: caller)
        } catch {
            // The codec checked the envelope; what is left is a token id that is not one.
            outcome = .refused(JobID.random(), JobFailure(.invalidRequest, "\(error)"))
        }
        guard case let .refused(job, failure) = outcome else { return }
        reply(.event(JobEventMessage(peer: peer, job: job, clientRequestID: m.clientRequestID, sequence: 1,
                                     event: .failed(failure))), to: peer, requestID: requestID)
    }
}
