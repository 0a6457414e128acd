import ArgumentParser
import CaravanClient
import CaravanCore
import CaravanTransport
import DaemonSetup
import Foundation

/// `caravanctl`: talks to a Caravan coordinator's client socket.
struct Caravanctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caravanctl", abstract: "Operate a Caravan cluster: status, plan previews, drain, keys, jobs.",
        subcommands: [Status.self, Plan.self, Drain.self, Keygen.self, Invite.self, Generate.self, Attach.self])
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

    func client() throws -> CaravanClient {
        guard insecure || coordinatorKey?.count == 40 else {
            throw ValidationError("give --coordinator-key (40 characters), or --insecure")
        }
        return try CaravanClient(endpoint: clients, serverKey: insecure ? nil : coordinatorKey,
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
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
    }

    func run() async throws {
        let input: JobInput = prompt.map { .prompt($0) } ?? .chat([ChatTurn(role: "user", content: chat ?? "")])
        // The coordinator's defaults for what is not asked for: no min-p, no repeat penalty.
        let sampling = SamplingParameters(temperature: temperature, topK: Int(topK), topP: topP, minP: 0)
        let job = JobRequest(input: input, clientRequestID: "caravanctl-\(ProcessInfo.processInfo.processIdentifier)",
                             sampling: sampling, maxTokens: Int(maxTokens), seed: seed)
        var output = JobOutput()
        try await connection.client().run(job) { output.show($0) }
        try output.check()
    }
}
