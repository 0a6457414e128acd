import CaravanClient
import CaravanCore
import Foundation
import Synchronization
import ZeroMQ

/// What the HTTP side hears about one job.
public enum JobPiece: Sendable, Equatable {
    /// Text that became safe to show.
    case text(String)
    /// The job ended (`text` is the held-back tail).
    case finished(text: String, reason: JobFinishReason, promptTokens: Int, completionTokens: Int)
}

/// Runs jobs on the coordinator for the HTTP routes through one shared pool of coordinator
/// connections (``CaravanClient``s, one job at a time each, all with the gateway's one key pair),
/// admits at most `maxConcurrentJobs` jobs at once (more: 429 at once, nothing queued), and maps
/// client failures to ``OpenAIError``s.
///
/// The pool holds at most `maxConcurrentJobs + 1` connections (one for status requests): a
/// connection is made when no idle one is left, returned after its job, and dropped after a
/// transport failure or timeout.
public final class ClusterGateway: Sendable {
    private let endpoint: String
    private let serverKey: String?
    /// The one key pair every pooled connection uses: the coordinator sees one client (its jobs,
    /// its per-client limit), whichever connection a request gets.
    private let keys: CurveKeyPair?
    /// How long to wait for each answer of the coordinator (the next token, a status).
    public let timeout: Duration
    /// Jobs running at once at most; more are refused with 429.
    public let maxConcurrentJobs: Int
    private let configuredModel: String?
    private struct Pool {
        var idle: [CaravanClient] = []
        /// Connections made and not dropped (idle or in use).
        var open = 0
        /// Jobs running now.
        var running = 0
        /// The coordinator's model name and when it was read (requests ask for it each time).
        var model: (name: String, at: ContinuousClock.Instant)?
    }
    private let pool = Mutex(Pool())

    /// Jobs go to `endpoint` (`serverKey`: the coordinator's CURVE public key, nil = plain TCP),
    /// as `keys` (nil = one new pair for this gateway). `modelName` overrides the name the
    /// coordinator reports. At most `maxConcurrentJobs` jobs run at once.
    public init(endpoint: String, serverKey: String?, keys: CurveKeyPair?, modelName: String? = nil,
                timeout: Duration = .seconds(60), maxConcurrentJobs: Int = 32) throws {
        self.endpoint = endpoint
        self.serverKey = serverKey
        self.keys = try keys ?? (serverKey == nil ? nil : CurveKeyPair.generate())
        self.configuredModel = modelName
        self.timeout = timeout
        self.maxConcurrentJobs = max(1, maxConcurrentJobs)
    }

    /// Connections open now (idle or in use) and jobs running, for tests and logs.
    public var usage: (connections: Int, running: Int) { pool.withLock { ($0.open, $0.running) } }

    private func take() throws(OpenAIError) -> CaravanClient {
        let reuse = pool.withLock { p -> CaravanClient? in
            if let c = p.idle.popLast() { return c }
            p.open += 1
            return nil
        }
        if let reuse { return reuse }
        do {
            return try CaravanClient(endpoint: endpoint, serverKey: serverKey, keys: keys)
        } catch {
            pool.withLock { $0.open -= 1 }
            throw .unavailable("cannot connect to the coordinator at \(endpoint): \(error)")
        }
    }

    private func giveBack(_ client: CaravanClient) {
        pool.withLock { p in
            if p.idle.count < maxConcurrentJobs + 1 { p.idle.append(client) } else { p.open -= 1 }
        }
    }

    /// A connection that failed is closed, not pooled.
    private func drop(_ client: CaravanClient) {
        pool.withLock { $0.open -= 1 }
    }

    /// Gives up on a job whose stream failed (the coordinator timed out or the link broke): the
    /// job the coordinator accepted (`job`, nil when none or it ended) is cancelled there, best
    /// effort, since nobody can read its output any more and it would otherwise go on holding KV
    /// room and this server's job count; then the connection is dropped.
    private func abandon(_ client: CaravanClient, _ job: JobID?) async {
        if let job { try? await client.cancel(job: job) }
        drop(client)
    }

    /// Takes a job slot, or refuses with 429 when `maxConcurrentJobs` jobs run.
    private func admit() throws(OpenAIError) {
        let admitted = pool.withLock { p -> Bool in
            guard p.running < maxConcurrentJobs else { return false }
            p.running += 1
            return true
        }
        guard admitted else {
            throw .tooManyRequests("this server runs at most \(maxConcurrentJobs) requests at once; try again shortly")
        }
    }

    private func release() { pool.withLock { $0.running -= 1 } }

    static func map(_ error: ClientError) -> OpenAIError {
        switch error {
        case .timeout(let what): .unavailable("the coordinator did not answer in time (\(what))")
        case .transport(let why): .unavailable("the coordinator cannot be reached: \(why)")
        case let .rejected(code, message): .invalid("the coordinator refused the request: \(code): \(message)")
        case .invalidRequest(let why): .invalid(why)
        case .badReply(let why): .internalError("the coordinator's answer could not be read: \(why)")
        }
    }

    static func map(_ failure: JobFailure) -> OpenAIError {
        let message = failure.message
        switch failure.reason {
        case .unavailable, .workerLost: return .unavailable("the cluster cannot serve the job: \(message)")
        case .internal: return .internalError(message)
        case .contextOverflow: return .invalid(message, code: "context_length_exceeded")
        case .tooManyJobs: return .tooManyRequests("the cluster holds this server's limit of jobs: \(message)")
        case .invalidRequest: return .invalid(message)
        }
    }

    /// The served model's name: the configured one, else the coordinator's current model (read
    /// at most every 10 seconds, not on every request).
    public func modelName() async throws(OpenAIError) -> String {
        if let configuredModel { return configuredModel }
        if let cached = pool.withLock({ $0.model }), ContinuousClock.now - cached.at < .seconds(10) { return cached.name }
        let client = try take()
        do {
            let served = try await client.servedModel(timeout: min(timeout, .seconds(10)))
            giveBack(client)
            guard !served.name.isEmpty else { throw OpenAIError.unavailable("the cluster has no model yet: \(served.waitingReason)") }
            pool.withLock { $0.model = (served.name, .now) }
            return served.name
        } catch let e as ClientError {
            drop(client)
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
    public func run(_ job: JobRequest) -> AsyncThrowingStream<JobPiece, any Error> {
        let (stream, continuation) = AsyncThrowingStream<JobPiece, any Error>.makeStream()
        struct State {
            var jobID: JobID?
            var ended = false
            var client: CaravanClient?
        }
        let state = Mutex(State())
        let timeout = self.timeout
        let task = Task {
            let client: CaravanClient
            do {
                try admit()
            } catch {
                continuation.finish(throwing: error)
                return
            }
            // The slot is given back before the stream ends (not after, as a defer would), so a
            // caller that has seen one job end can start the next without a spurious 429.
            do {
                client = try take()
            } catch {
                release()
                continuation.finish(throwing: error)
                return
            }
            state.withLock { $0.client = client }
            var promptTokens = 0
            var failure: OpenAIError?
            do {
                try await client.run(job, timeout: timeout) { event in
                    switch event {
                    case let .accepted(jobID, prompt, _):
                        promptTokens = prompt
                        state.withLock { $0.jobID = jobID }
                    case .token(let token):
                        if !token.text.isEmpty { continuation.yield(.text(token.text)) }
                    case .finished(let end):
                        state.withLock { $0.ended = true }
                        continuation.yield(.finished(text: end.text, reason: end.reason, promptTokens: promptTokens,
                                                     completionTokens: end.completionTokens))
                    case .failed(let f):
                        state.withLock { $0.ended = true }
                        failure = Self.map(f)
                    }
                }
                giveBack(client)
            } catch let error as ClientError {
                await abandon(client, state.withLock { $0.ended ? nil : $0.jobID })
                failure = Self.map(error)
            } catch {
                await abandon(client, state.withLock { $0.ended ? nil : $0.jobID })
                failure = .internalError("\(error)")
            }
            release()
            if let failure { continuation.finish(throwing: failure) } else { continuation.finish() }
        }
        continuation.onTermination = { termination in
            guard case .cancelled = termination else { return }
            let (jobID, client) = state.withLock { s -> (JobID?, CaravanClient?) in
                s.ended ? (nil, nil) : (s.jobID, s.client)
            }
            guard let jobID, let client else {
                task.cancel()
                return
            }
            // The job's own stream then ends with a cancelled finish, and the task returns.
            Task { try? await client.cancel(job: jobID) }
        }
        return stream
    }
}
