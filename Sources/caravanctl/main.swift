import ArgumentParser
import CaravanClient
import CaravanWire
import ClusterSupport
import Foundation

/// `caravanctl`: talks to a Caravan coordinator's client socket.
@main
struct Caravanctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caravanctl", abstract: "Submit jobs to a Caravan cluster.",
        subcommands: [Generate.self, Status.self, Drain.self, Attach.self])
}

/// Where the coordinator is.
struct Connection: ParsableArguments {
    @Option(help: "The coordinator's client endpoint.")
    var clients = "tcp://127.0.0.1:7100"

    @Option(name: .customLong("coordinator-key"), help: "The coordinator's CURVE public key (logged at its start as public_key).")
    var coordinatorKey: String?

    @Option(name: .customLong("key-file"), help: "This client's CURVE secret key file (created when missing); default: a new key each run.")
    var keyFile: String?

    @Flag(help: "Plain TCP (for a coordinator started with --insecure).")
    var insecure = false

    func validate() throws {
        guard insecure || coordinatorKey?.count == 40 else {
            throw ValidationError("give --coordinator-key (40 characters), or --insecure")
        }
    }

    func client() throws -> CaravanClient {
        try CaravanClient(endpoint: clients, serverKey: insecure ? nil : coordinatorKey,
                          keys: try keyFile.map { try ClusterSecurity.keyPair(file: $0) })
    }
}

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text for a prompt (or a chat message) and stream it.")

    @OptionGroup var connection: Connection

    @Option(help: "The prompt text.")
    var prompt: String?

    @Option(help: "A user message, rendered with the model's chat template.")
    var chat: String?

    @Option(help: "Temperature (0 = greedy).")
    var temperature: Float = 0.8

    @Option(name: .customLong("top-k"), help: "Top-k (0 = off).")
    var topK: UInt32 = 40

    @Option(name: .customLong("top-p"), help: "Top-p (1 = off).")
    var topP: Float = 0.95

    @Option(help: "Seed.")
    var seed: UInt64?

    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.")
    var maxTokens: UInt32 = 128

    func validate() throws {
        guard (prompt == nil) != (chat == nil) else { throw ValidationError("give --prompt or --chat") }
    }

    func run() async throws {
        var job = Caravan_V1_JobSubmit()
        job.clientRequestID = "caravanctl-\(ProcessInfo.processInfo.processIdentifier)"
        if let prompt { job.input = .prompt(prompt) }
        if let chat {
            var m = Caravan_V1_ChatMessage()
            m.role = "user"
            m.content = chat
            var c = Caravan_V1_ChatConversation()
            c.messages = [m]
            job.input = .chat(c)
        }
        job.sampling.temperature = temperature
        job.sampling.topK = topK
        job.sampling.topP = topP
        job.sampling.maxTokens = maxTokens
        if let seed { job.sampling.seed = seed }
        var failure: String?
        try await connection.client().run(job) { update in
            switch update {
            case .accepted: break
            case .token(_, let text): FileHandle.standardOutput.write(Data(text.utf8))
            case .finished(let reason, let text, let n):
                FileHandle.standardOutput.write(Data((text + "\n").utf8))
                FileHandle.standardError.write(Data("[\(n) tokens, \(reason)]\n".utf8))
            case .failed(let code, let message): failure = "\(code): \(message)"
            }
        }
        if let failure { throw ValidationError("the job failed: \(failure)") }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a job's status.")

    @OptionGroup var connection: Connection

    @Argument(help: "The job id (job-N).")
    var jobID: String

    func run() async throws {
        let s = try await connection.client().status(jobID: jobID)
        print("\(s.jobID): \(s.state) prompt=\(s.promptTokens) completion=\(s.completionTokens) epoch=\(s.planEpoch)"
            + (s.hasError ? " error=\(s.error.message)" : ""))
    }
}


/// `caravanctl drain WORKER`: move a worker's layers to the others, then let it exit.
struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drain a worker: the coordinator re-plans without it (running jobs move and continue), then the worker exits.")

    @OptionGroup var connection: Connection

    @Argument(help: "The worker id (as in `caravanctl status`).")
    var workerID: String

    @Option(help: "Why (for the coordinator's log).")
    var reason = "operator request"

    func run() async throws {
        let (ok, message) = try await connection.client().drain(workerID: workerID, reason: reason)
        print(message)
        if !ok { throw ExitCode.failure }
    }
}

/// `caravanctl attach JOB`: receive the rest of a job's stream (after a client or coordinator restart).
struct Attach: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-attach to a job by id and stream the rest of its output.")

    @OptionGroup var connection: Connection

    @Argument(help: "The job id (job-N).")
    var jobID: String

    @Option(name: .customLong("received-tokens"), help: "Tokens already received (they are not sent again).")
    var receivedTokens = 0

    func run() async throws {
        var failure: String?
        try await connection.client().attach(jobID: jobID, receivedTokens: receivedTokens) { update in
            switch update {
            case .accepted: break
            case .token(_, let text): FileHandle.standardOutput.write(Data(text.utf8))
            case .finished(let reason, let text, let n):
                FileHandle.standardOutput.write(Data((text + "\n").utf8))
                FileHandle.standardError.write(Data("[\(n) tokens, \(reason)]\n".utf8))
            case .failed(let code, let message): failure = "\(code): \(message)"
            }
        }
        if let failure { throw ValidationError("the job failed: \(failure)") }
    }
}
