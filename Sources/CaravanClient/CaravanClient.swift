import CaravanCore
import CaravanWire
import Foundation
import ZeroMQ

/// A client of a Caravan coordinator's client socket (one DEALER, CURVE unless `serverKey` is nil).
/// Use one job at a time per client object (events are read from the shared socket).
///
/// Speaks CaravanCore's values (``JobRequest``, ``JobEvent``, ``JobID``, ``JobStatus``); the
/// protobuf messages stay inside (conversions in CaravanWire's `JobRequest+Wire.swift` and
/// `JobEvent+Wire.swift`).
public final class CaravanClient: Sendable {
    private let loop: EventLoop
    let socket: AsyncSocket
    let codec = WireCodec()

    /// Connects to `endpoint`; `serverKey` is the coordinator's CURVE public key (nil = plain TCP),
    /// `keys` this client's key pair (nil = a new one).
    public init(endpoint: String, serverKey: String?, keys: CurveKeyPair? = nil) throws {
        loop = try EventLoop(context: try Context(), name: "caravan-client")
        let security: SocketSecurity = try serverKey.map { .curveClient(keys: try keys ?? CurveKeyPair.generate(), serverPublicKey: $0) } ?? .plain
        let largest = Int64(FrameLimits.fromCoordinator(codec.limits))
        socket = try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.apply(security)
            try socket.set(.maxMessageSize, largest)
            try socket.connect(endpoint)
        }
    }

    deinit { loop.shutdown() }

    /// Submits `request` and calls `onEvent` for each event of its job until it finishes or fails;
    /// every wait for the next event is bounded by `timeout`.
    public func run(_ request: JobRequest, timeout: Duration = .seconds(120),
                    onEvent: (JobEvent) -> Void) async throws(ClientError) {
        let submit: Caravan_V1_JobSubmit
        do {
            submit = try Caravan_V1_JobSubmit(request)
        } catch {
            throw .invalidRequest(error.description)
        }
        try await stream(.jobSubmit(submit), name: "job \(request.clientRequestID)", timeout: timeout,
                         isOurs: { $0.clientRequestID == request.clientRequestID }, onEvent: onEvent)
    }

    /// Re-attaches to a running or ended job (after a client or coordinator restart): calls
    /// `onEvent` for the tokens after the first `receivedTokens` and then for the rest of the job
    /// until it finishes or fails.
    public func attach(job: JobID, receivedTokens: Int = 0, timeout: Duration = .seconds(120),
                       onEvent: (JobEvent) -> Void) async throws(ClientError) {
        var m = Caravan_V1_JobAttach()
        m.jobID = job.rawValue
        m.receivedTokens = UInt32(clamping: receivedTokens)
        try await stream(.jobAttach(m), name: "job \(job)", timeout: timeout,
                         isOurs: { $0.jobID == job.rawValue }, onEvent: onEvent)
    }

    /// Cancels a job (its stream, if any, ends with a cancelled finish).
    public func cancel(job: JobID) async throws(ClientError) {
        var m = Caravan_V1_JobCancel()
        m.jobID = job.rawValue
        do {
            try await socket.send(try codec.encode(.jobCancel(m)), timeout: .seconds(5))
        } catch {
            throw .transport("\(error)")
        }
    }

    /// Sends `request`, then turns the job events `isOurs` accepts into ``JobEvent``s until the
    /// job finishes or fails; every wait is bounded by `timeout`.
    private func stream(_ request: Caravan_V1_Envelope.OneOf_Body, name: String, timeout: Duration,
                        isOurs: (Caravan_V1_JobEvent) -> Bool, onEvent: (JobEvent) -> Void) async throws(ClientError) {
        do {
            try await socket.send(try codec.encode(request), timeout: timeout)
        } catch {
            throw .transport("\(error)")
        }
        while true {
            let frames: [Message]
            do {
                frames = try await socket.receive(timeout: timeout)
            } catch {
                throw error.isTimeout ? .timeout(name) : .transport("\(error)")
            }
            // Not ours to judge: skip what we cannot read or is not about this job.
            switch try? codec.decode(frames) {
            case .message(.jobEvent(let e), _)? where isOurs(e):
                let event: JobEvent
                do {
                    event = try JobEvent(wire: e)
                } catch {
                    throw .badReply("\(name): \(error)")
                }
                onEvent(event)
                if event.isEnd { return }
            case .message(.error(let e), _)?:
                throw .rejected(code: e.code, message: e.message)
            default:
                continue
            }
        }
    }

    /// Sends a request and returns the coordinator's answer to it (matched by request id).
    func request(_ body: Caravan_V1_Envelope.OneOf_Body, timeout: Duration) async throws(ClientError) -> Caravan_V1_Envelope.OneOf_Body {
        let id = UInt64.random(in: 1...UInt64.max)
        do {
            try await socket.send(try codec.encode(body, requestID: id), timeout: timeout)
            while true {
                let frames = try await socket.receive(timeout: timeout)
                if case .message(let reply, id)? = try? codec.decode(frames) { return reply }
            }
        } catch let error as ZMQError {
            throw error.isTimeout ? .timeout("request") : .transport("\(error)")
        } catch {
            throw .transport("\(error)")
        }
    }

    /// The answer when it is what `pick` expects, a rejection for an error reply, else a bad reply.
    func expect<T>(_ reply: Caravan_V1_Envelope.OneOf_Body, _ pick: (Caravan_V1_Envelope.OneOf_Body) -> T?) throws(ClientError) -> T {
        if let answer = pick(reply) { return answer }
        if case .error(let e) = reply { throw .rejected(code: e.code, message: e.message) }
        throw .badReply("the coordinator answered with another message")
    }
}
