import CaravanClient
import CaravanWire
import Foundation
import Synchronization
import ZeroMQ

/// What the HTTP side hears about one job.
public enum JobPiece: Sendable, Equatable {
    /// Text that became safe to show.
    case text(String)
    /// The job ended (`text` is the held-back tail).
    case finished(text: String, reason: Caravan_V1_FinishReason, promptTokens: Int, completionTokens: Int)
}

/// Runs jobs on the coordinator for the HTTP routes: keeps a few idle ``CaravanClient``s (one job
/// at a time each), and maps client failures to ``OpenAIError``s.
public final class ClusterGateway: Sendable {
    private let endpoint: String
    private let serverKey: String?
    private let keys: CurveKeyPair?
    /// How long to wait for each answer of the coordinator (the next token, a status).
    public let timeout: Duration
    private let configuredModel: String?
    private let idle = Mutex<[CaravanClient]>([])
    private let maxIdle = 8

    /// Jobs go to `endpoint` (`serverKey`: the coordinator's CURVE public key, nil = plain TCP),
    /// as `keys` (nil = a new pair per connection). `modelName` overrides the name the coordinator
    /// reports.
    public init(endpoint: String, serverKey: String?, keys: CurveKeyPair?, modelName: String? = nil,
                timeout: Duration = .seconds(60)) {
        self.endpoint = endpoint
        self.serverKey = serverKey
        self.keys = keys
        self.configuredModel = modelName
        self.timeout = timeout
    }

    private func take() throws(OpenAIError) -> CaravanClient {
        if let c = idle.withLock({ $0.popLast() }) { return c }
        do {
            return try CaravanClient(endpoint: endpoint, serverKey: serverKey, keys: keys)
        } catch {
            throw .unavailable("cannot connect to the coordinator at \(endpoint): \(error)")
        }
    }

    private func giveBack(_ client: CaravanClient) {
        idle.withLock { if $0.count < maxIdle { $0.append(client) } }
    }

    static func map(_ error: ClientError) -> OpenAIError {
        switch error {
        case .timeout(let what): .unavailable("the coordinator did not answer in time (\(what))")
        case .transport(let why): .unavailable("the coordinator cannot be reached: \(why)")
        case let .rejected(code, message): .invalid("the coordinator refused the request: \(code): \(message)")
        }
    }

    static func map(_ code: Caravan_V1_JobErrorCode, _ message: String) -> OpenAIError {
        switch code {
        case .unavailable, .workerLost: .unavailable("the cluster cannot serve the job: \(message)")
        case .internal: .internalError(message)
        case .contextOverflow: .invalid(message, code: "context_length_exceeded")
        default: .invalid(message)
        }
    }

    /// The served model's name: the configured one, else the coordinator's current model.
    public func modelName() async throws(OpenAIError) -> String {
        if let configuredModel { return configuredModel }
        let client = try take()
        do {
            let status = try await client.clusterStatus(timeout: min(timeout, .seconds(10)))
            giveBack(client)
            guard !status.model.name.isEmpty else { throw OpenAIError.unavailable("the cluster has no model yet: \(status.waitingReason)") }
            return status.model.name
        } catch let e as ClientError {
            throw Self.map(e)
        } catch let e as OpenAIError {
            throw e
        } catch {
            throw .internalError("\(error)")
        }
    }

    /// Starts `job` and returns its pieces as a stream that ends after `.finished` or throws an
    /// ``OpenAIError``. When the consumer stops early (the HTTP client went away), the job is
    /// cancelled on the coordinator.
    public func run(_ job: Caravan_V1_JobSubmit) -> AsyncThrowingStream<JobPiece, any Error> {
        let (stream, continuation) = AsyncThrowingStream<JobPiece, any Error>.makeStream()
        struct State {
            var jobID: String?
            var ended = false
            var client: CaravanClient?
        }
        let state = Mutex(State())
        let timeout = self.timeout
        let task = Task {
            let client: CaravanClient
            do {
                client = try take()
            } catch {
                continuation.finish(throwing: error)
                return
            }
            state.withLock { $0.client = client }
            var promptTokens = 0
            var failure: OpenAIError?
            do {
                try await client.run(job, timeout: timeout) { update in
                    switch update {
                    case let .accepted(jobID, prompt):
                        promptTokens = prompt
                        state.withLock { $0.jobID = jobID }
                    case let .token(_, text):
                        if !text.isEmpty { continuation.yield(.text(text)) }
                    case let .finished(reason, text, completion):
                        state.withLock { $0.ended = true }
                        continuation.yield(.finished(text: text, reason: reason, promptTokens: promptTokens, completionTokens: completion))
                    case let .failed(code, message):
                        state.withLock { $0.ended = true }
                        failure = Self.map(code, message)
                    }
                }
                giveBack(client)
            } catch let error as ClientError {
                failure = Self.map(error)
            } catch {
                failure = .internalError("\(error)")
            }
            if let failure { continuation.finish(throwing: failure) } else { continuation.finish() }
        }
        continuation.onTermination = { termination in
            guard case .cancelled = termination else { return }
            let (jobID, client) = state.withLock { s -> (String?, CaravanClient?) in
                s.ended ? (nil, nil) : (s.jobID, s.client)
            }
            guard let jobID, let client else {
                task.cancel()
                return
            }
            // The job's own stream then ends with a cancelled finish, and the task returns.
            Task { try? await client.cancel(jobID: jobID) }
        }
        return stream
    }
}
