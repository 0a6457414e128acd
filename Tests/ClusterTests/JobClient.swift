import CaravanCore
import CaravanWire
import Foundation
import ZeroMQ

/// A minimal job client for tests: a DEALER on the coordinator's client endpoint.
final class JobClient: @unchecked Sendable {
    struct Result: Equatable {
        var tokens: [Int32] = []
        var text = ""
        var finish: JobFinishReason?
        var error: String?
    }

    let loop: EventLoop
    let socket: AsyncSocket
    let codec = WireCodec()

    /// A client of the coordinator at `endpoint` with CURVE public key `serverKey` (nil: plain),
    /// using `keys` (default: a new key pair, which an `--open-clients` coordinator takes as a client).
    init(context: Context, endpoint: String, serverKey: String?, keys: CurveKeyPair? = nil) throws {
        loop = try EventLoop(context: context, name: "test-client")
        let security: SocketSecurity = try serverKey.map { .curveClient(keys: try keys ?? CurveKeyPair.generate(), serverPublicKey: $0) } ?? .plain
        socket = try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.apply(security)
            try socket.connect(endpoint)
        }
    }

    deinit { loop.shutdown() }

    static func submit(prompt: [Int32], sampling: Caravan_V1_SamplingParameters, id: String) -> Caravan_V1_JobSubmit {
        var m = Caravan_V1_JobSubmit()
        m.clientRequestID = id
        var t = Caravan_V1_TokenIDs()
        t.ids = prompt.map { UInt32($0) }
        m.input = .promptTokens(t)
        m.sampling = sampling
        return m
    }

    /// Sends one request and returns the first reply (bounded by `timeout`).
    func request(_ body: Caravan_V1_Envelope.OneOf_Body, timeout: Duration = .seconds(10)) async throws -> Caravan_V1_Envelope.OneOf_Body {
        try await socket.send(try codec.encode(body, requestID: 77), timeout: .seconds(5))
        while true {
            let frames = try await socket.receive(timeout: timeout)
            if case .message(let reply, 77) = try codec.decode(frames) { return reply }
        }
    }

    /// Submits `jobs` at once and collects each one's tokens until it finishes (bounded by `timeout`).
    func run(_ jobs: [Caravan_V1_JobSubmit], timeout: Duration = .seconds(90),
             onEvent: (Caravan_V1_JobEvent, [String: Result]) -> Void = { _, _ in }) async throws -> [String: Result] {
        try await send(jobs)
        return try await collect(jobs.map(\.clientRequestID), timeout: timeout, onEvent: onEvent)
    }

    /// Submits `jobs` (each send bounded).
    func send(_ jobs: [Caravan_V1_JobSubmit]) async throws {
        for job in jobs { try await socket.send(try codec.encode(.jobSubmit(job)), timeout: .seconds(5)) }
    }

    /// Receives job events, handing each to `handle`, until `finished()` holds (checked before
    /// every receive); past `timeout` throws a timeout naming `operation` and `detail()`. Other
    /// messages are skipped.
    func receiveEvents(until finished: () -> Bool, timeout: Duration, operation: String, detail: () -> String,
                       _ handle: (Caravan_V1_JobEvent) -> Void) async throws {
        let deadline = ContinuousClock.now + timeout
        while !finished() {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw ZMQError(code: EAGAIN, operation: operation, detail: detail()) }
            let frames = try await socket.receive(timeout: left)
            guard case .message(.jobEvent(let e), _) = try codec.decode(frames) else { continue }
            handle(e)
        }
    }

    /// Collects the events of the jobs with client request ids `ids` until each ends (bounded by
    /// `timeout`), starting from `results`.
    func collect(_ ids: [String], from start: [String: Result] = [:], timeout: Duration = .seconds(90),
                 onEvent: (Caravan_V1_JobEvent, [String: Result]) -> Void = { _, _ in }) async throws -> [String: Result] {
        var results = start
        var done = Set<String>()
        try await receiveEvents(until: { done.count >= ids.count }, timeout: timeout, operation: "job results",
                                detail: { "timed out; got \(results)" }) { e in
            var r = results[e.clientRequestID] ?? Result()
            // Read as CaravanClient reads it: a coordinator event that does not convert is an error.
            switch Swift.Result(catching: { () throws(WireError) in try JobEvent(wire: e) }) {
            case .success(.token(let t)):
                r.tokens.append(t.id)
                r.text += t.text
            case .success(.finished(let f)):
                r.finish = f.reason
                r.text += f.text
                done.insert(e.clientRequestID)
            case .success(.failed(let f)):
                r.error = f.message
                done.insert(e.clientRequestID)
            case .success(.accepted):
                break
            case .failure(let error):
                r.error = "unreadable event: \(error)"
                done.insert(e.clientRequestID)
            }
            results[e.clientRequestID] = r
            onEvent(e, results)
        }
        return results
    }
}
