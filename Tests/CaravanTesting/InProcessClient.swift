import CaravanTransport
import CaravanWire
import Foundation
import ZeroMQ

/// A job client of an ``InProcessCluster``: one connection to the coordinator's client endpoint
/// on the in-memory hub, speaking the client protocol (`JobSubmit`, job events, admin requests).
public final class InProcessClient: Sendable {
    /// What one job produced.
    public struct Result: Equatable, Sendable {
        /// Generated token ids, in order.
        public var tokens: [Int32] = []
        /// The streamed text.
        public var text = ""
        /// Why it finished (nil when it failed or is running).
        public var finish: Caravan_V1_FinishReason?
        /// The error it ended with.
        public var error: String?
    }

    /// Why the client gave up.
    public struct Timeout: Error, CustomStringConvertible {
        /// What it waited for and what it had.
        public let description: String
    }

    private let link: InMemoryTransport
    private let codec = WireCodec()

    /// A client connected to `endpoint` of `hub` as `node`, proving `identity` (a CURVE key; nil in
    /// plain mode).
    public init(hub: InMemoryHub, endpoint: String, node: String, identity: String? = nil) {
        link = hub.connect(endpoint, node: node, identity: identity)
    }

    /// A job of `prompt` token ids: greedy when `temperature` is 0, else top-k 40 seeded with `seed`.
    public static func job(prompt: [Int32], tokens: UInt32, temperature: Float = 0, seed: UInt64 = 1,
                           id: String) -> Caravan_V1_JobSubmit {
        var m = Caravan_V1_JobSubmit()
        m.clientRequestID = id
        var ids = Caravan_V1_TokenIDs()
        ids.ids = prompt.map { UInt32($0) }
        m.input = .promptTokens(ids)
        m.sampling.temperature = temperature
        m.sampling.seed = seed
        m.sampling.topK = 40
        m.sampling.maxTokens = tokens
        return m
    }

    /// Sends one request and returns its reply (bounded by `timeout`).
    public func request(_ body: Caravan_V1_Envelope.OneOf_Body, timeout: Duration = .seconds(10)) async throws
        -> Caravan_V1_Envelope.OneOf_Body {
        let id = UInt64.random(in: 1...UInt64.max)
        try await link.send(try codec.encode(body, requestID: id), timeout: .seconds(5))
        let deadline = ContinuousClock.now + timeout
        while true {
            let frames = try await receive(until: deadline, waitingFor: "a reply to a request")
            if case .message(let reply, id) = try codec.decode(frames) { return reply }
        }
    }

    /// The cluster status (as `caravanctl status` reads it).
    public func status(timeout: Duration = .seconds(10)) async throws -> Caravan_V1_ClusterStatus {
        guard case .clusterStatus(let status) = try await request(.clusterStatusRequest(Caravan_V1_ClusterStatusRequest()),
                                                                  timeout: timeout) else {
            throw Timeout(description: "the coordinator did not answer a status request with a status")
        }
        return status
    }

    /// Submits `jobs` at once and collects each one's events until it ends (bounded by
    /// `timeout`); `onEvent` sees every event with the results so far (to inject a fault at a point
    /// of the generation).
    public func run(_ jobs: [Caravan_V1_JobSubmit], timeout: Duration = .seconds(30),
                    onEvent: (Caravan_V1_JobEvent, [String: Result]) async -> Void = { _, _ in }) async throws -> [String: Result] {
        for job in jobs { try await link.send(try codec.encode(.jobSubmit(job)), timeout: .seconds(5)) }
        let ids = Set(jobs.map(\.clientRequestID))
        var results: [String: Result] = [:]
        var done = Set<String>()
        let deadline = ContinuousClock.now + timeout
        while done.count < ids.count {
            let frames = try await receive(until: deadline, waitingFor: "job events; got \(results)")
            guard case .message(.jobEvent(let e), _) = try codec.decode(frames), ids.contains(e.clientRequestID) else { continue }
            var r = results[e.clientRequestID] ?? Result()
            switch e.event {
            case .token(let t)?:
                r.tokens.append(Int32(t.tokenID))
                r.text += t.text
            case .finished(let f)?:
                r.finish = f.reason
                r.text += f.text
                done.insert(e.clientRequestID)
            case .error(let err)?:
                r.error = err.message
                done.insert(e.clientRequestID)
            default:
                break
            }
            results[e.clientRequestID] = r
            await onEvent(e, results)
        }
        return results
    }

    /// Closes the connection.
    public func close() async { await link.close() }

    private func receive(until deadline: ContinuousClock.Instant, waitingFor what: String) async throws -> [ZeroMQ.Message] {
        let link = self.link
        return try await withThrowingTaskGroup(of: [ZeroMQ.Message]?.self) { group in
            group.addTask { try await link.receive().frames }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { group.cancelAll() }
            guard let frames = try await group.next() ?? nil else { throw Timeout(description: "timed out waiting for \(what)") }
            return frames
        }
    }
}
