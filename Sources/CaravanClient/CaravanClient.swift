import CaravanWire
import Foundation
import ZeroMQ

/// What a client hears about its job.
public enum JobUpdate: Sendable, Equatable {
    /// The coordinator accepted the job (`jobID`, prompt length in tokens).
    case accepted(jobID: String, promptTokens: Int)
    /// A generated token and the text that became safe to show.
    case token(id: Int32, text: String)
    /// The job ended; `text` is the held-back tail.
    case finished(reason: Caravan_V1_FinishReason, text: String, completionTokens: Int)
    /// The job failed or was refused.
    case failed(code: Caravan_V1_JobErrorCode, message: String)
}

/// Why a client call failed.
public enum ClientError: Error, CustomStringConvertible, Sendable {
    /// No answer within the time limit.
    case timeout(String)
    /// The socket failed.
    case transport(String)
    /// The coordinator answered with an error.
    case rejected(code: String, message: String)

    public var description: String {
        switch self {
        case .timeout(let what): "no answer from the coordinator: \(what)"
        case .transport(let why): "connection failed: \(why)"
        case let .rejected(code, message): "\(code): \(message)"
        }
    }
}

/// A client of a Caravan coordinator's client socket (one DEALER, CURVE unless `serverKey` is nil).
/// Use one job at a time per client object (updates are read from the shared socket).
public final class CaravanClient: Sendable {
    private let loop: EventLoop
    private let socket: AsyncSocket
    private let codec = WireCodec()

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

    /// Submits `job` and calls `onUpdate` for each update until it finishes or fails; every wait for
    /// the next update is bounded by `timeout`.
    public func run(_ job: Caravan_V1_JobSubmit, timeout: Duration = .seconds(120),
                    onUpdate: (JobUpdate) -> Void) async throws(ClientError) {
        try await stream(.jobSubmit(job), name: "job \(job.clientRequestID)", timeout: timeout,
                         isOurs: { $0.clientRequestID == job.clientRequestID }, onUpdate: onUpdate)
    }

    /// Re-attaches to a running or ended job (after a client or coordinator restart): calls
    /// `onUpdate` for the tokens after the first `receivedTokens` and then for the rest of the job
    /// until it finishes or fails.
    public func attach(jobID: String, receivedTokens: Int = 0, timeout: Duration = .seconds(120),
                       onUpdate: (JobUpdate) -> Void) async throws(ClientError) {
        var m = Caravan_V1_JobAttach()
        m.jobID = jobID
        m.receivedTokens = UInt32(clamping: receivedTokens)
        try await stream(.jobAttach(m), name: "job \(jobID)", timeout: timeout,
                         isOurs: { $0.jobID == jobID }, onUpdate: onUpdate)
    }

    /// Sends `request`, then turns the job events `isOurs` accepts into updates until the job
    /// finishes or fails; every wait is bounded by `timeout`.
    private func stream(_ request: Caravan_V1_Envelope.OneOf_Body, name: String, timeout: Duration,
                        isOurs: (Caravan_V1_JobEvent) -> Bool, onUpdate: (JobUpdate) -> Void) async throws(ClientError) {
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
            // Not ours to judge: skip what we cannot read.
            switch try? codec.decode(frames) {
            case .message(.jobEvent(let e), _)? where isOurs(e):
                switch e.event {
                case .accepted(let a)?: onUpdate(.accepted(jobID: e.jobID, promptTokens: Int(a.promptTokens)))
                case .token(let t)?: onUpdate(.token(id: Int32(bitPattern: t.tokenID), text: t.text))
                case .finished(let f)?:
                    onUpdate(.finished(reason: f.reason, text: f.text, completionTokens: Int(f.completionTokens)))
                    return
                case .error(let err)?:
                    onUpdate(.failed(code: err.code, message: err.message))
                    return
                case nil: break
                }
            case .message(.error(let e), _)?:
                throw .rejected(code: e.code, message: e.message)
            default:
                continue
            }
        }
    }

    /// Asks for a job's status.
    public func status(jobID: String, timeout: Duration = .seconds(10)) async throws(ClientError) -> Caravan_V1_JobStatus {
        var statusRequest = Caravan_V1_JobStatusRequest()
        statusRequest.jobID = jobID
        switch try await request(.jobStatusRequest(statusRequest), timeout: timeout) {
        case .jobStatus(let s): return s
        case .error(let e): throw .rejected(code: e.code, message: e.message)
        default: throw .rejected(code: "unexpected", message: "the coordinator answered with another message")
        }
    }

    /// Asks for the cluster's status (workers, jobs, plan history).
    public func clusterStatus(includeFinishedJobs: Bool = false,
                              timeout: Duration = .seconds(10)) async throws(ClientError) -> Caravan_V1_ClusterStatus {
        var m = Caravan_V1_ClusterStatusRequest()
        m.includeFinishedJobs = includeFinishedJobs
        switch try await request(.clusterStatusRequest(m), timeout: timeout) {
        case .clusterStatus(let s): return s
        case .error(let e): throw .rejected(code: e.code, message: e.message)
        default: throw .rejected(code: "unexpected", message: "the coordinator answered with another message")
        }
    }

    /// Asks what the coordinator's planner would do (changes nothing).
    public func planPreview(_ m: Caravan_V1_PlanPreviewRequest,
                            timeout: Duration = .seconds(10)) async throws(ClientError) -> Caravan_V1_PlanPreview {
        switch try await request(.planPreviewRequest(m), timeout: timeout) {
        case .planPreview(let p): return p
        case .error(let e): throw .rejected(code: e.code, message: e.message)
        default: throw .rejected(code: "unexpected", message: "the coordinator answered with another message")
        }
    }

    /// Asks the coordinator to drain a worker; returns its answer.
    public func drain(_ m: Caravan_V1_DrainRequest, timeout: Duration = .seconds(30)) async throws(ClientError) -> Caravan_V1_AdminResult {
        switch try await request(.drainRequest(m), timeout: timeout) {
        case .adminResult(let r): return r
        case .error(let e): throw .rejected(code: e.code, message: e.message)
        default: throw .rejected(code: "unexpected", message: "the coordinator answered with another message")
        }
    }

    /// Cancels a job (its stream, if any, ends with a cancelled finish).
    public func cancel(jobID: String) async throws(ClientError) {
        var m = Caravan_V1_JobCancel()
        m.jobID = jobID
        do {
            try await socket.send(try codec.encode(.jobCancel(m)), timeout: .seconds(5))
        } catch {
            throw .transport("\(error)")
        }
    }

    private func request(_ body: Caravan_V1_Envelope.OneOf_Body, timeout: Duration) async throws(ClientError) -> Caravan_V1_Envelope.OneOf_Body {
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
}
