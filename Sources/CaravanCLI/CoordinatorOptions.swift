import ArgumentParser
import CaravanClient
import CaravanCore
import CaravanTransport
import DaemonSetup
import Foundation

/// Where a Caravan coordinator is, for `generate` and `chat`; without an endpoint they run locally.
struct CoordinatorOptions: ParsableArguments {
    @Option(name: .customLong("coordinator"),
            help: "The coordinator's client endpoint (e.g. tcp://127.0.0.1:7100; default: $CARAVAN_COORDINATOR). Without it the model runs locally.")
    var coordinator: String?

    @Option(name: .customLong("coordinator-key"),
            help: "The coordinator's CURVE public key (default: $CARAVAN_COORDINATOR_KEY).")
    var coordinatorKey: String?

    @Flag(help: "Plain TCP to the coordinator (for one started with --insecure).")
    var insecure = false

    @Option(name: .customLong("key-file"),
            help: "This client's CURVE secret key file, listed in the coordinator's authorized_clients (default: $CARAVAN_KEY_FILE, else a new key each run, which only an --open-clients coordinator admits).")
    var keyFile: String?

    private static func environment(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// The coordinator's endpoint (flag, then environment), or nil for local mode.
    var endpoint: String? { coordinator ?? Self.environment("CARAVAN_COORDINATOR") }

    /// The coordinator's public key (flag, then environment).
    var key: String? { coordinatorKey ?? Self.environment("CARAVAN_COORDINATOR_KEY") }

    func validate() throws {
        guard endpoint != nil else {
            if insecure || coordinatorKey != nil {
                throw ValidationError("--coordinator-key and --insecure need --coordinator (or CARAVAN_COORDINATOR)")
            }
            return
        }
        guard insecure || key?.count == 40 else {
            throw ValidationError("with --coordinator give --coordinator-key (40 characters; or CARAVAN_COORDINATOR_KEY), or --insecure")
        }
    }

    /// A client of the coordinator, or nil in local mode.
    func client() throws -> CaravanClient? {
        guard let endpoint else { return nil }
        let file = keyFile ?? Self.environment("CARAVAN_KEY_FILE")
        return try CaravanClient(endpoint: endpoint, serverKey: insecure ? nil : key,
                                 keys: try file.map { try ClusterSecurity.keyPair(file: $0) })
    }

    /// Rejects the local-only model options, which a cluster job cannot honour.
    static func rejectLocalOnly(_ model: ModelOptions) throws {
        var flags: [String] = []
        if model.model != nil { flags.append("--model") }
        if model.threads != nil { flags.append("--threads") }
        if model.context != nil { flags.append("--ctx") }
        if !flags.isEmpty {
            throw ValidationError("local-only option(s) \(flags.joined(separator: ", ")): with --coordinator the cluster's model and settings are used")
        }
    }
}

/// One job run through a coordinator, streamed like a local generation.
enum RemoteGeneration {
    /// Why a cluster job failed.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Submits `input` sampled with `sampling` (every parameter, its seed and max tokens
    /// included: the output equals a local run's), prints tokens as they arrive (plain text, or one
    /// JSON object per event) and returns the whole generated text.
    static func run(client: CaravanClient, input: JobInput, sampling: SamplingParameters, json: Bool) async throws -> String {
        let job = JobRequest(input: input,
                             clientRequestID: "caravan-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))",
                             sampling: sampling, maxTokens: sampling.maxTokens, seed: sampling.seed)
        var text = ""
        var failure: String?
        var summary = ""
        var firstToken: Date?
        let submitted = Date()
        try await client.run(job) { event in
            switch event {
            case let .accepted(jobID, promptTokens, _):
                summary = "\(jobID), \(promptTokens) prompt tokens"
            case .token(let token):
                if firstToken == nil { firstToken = Date() }
                text += token.text
                Console.out(json ? LocalGeneration.jsonLine(["token": .int(Int(token.id)), "text": .string(token.text)]) : token.text)
            case .finished(let end):
                let (piece, completionTokens) = (end.text, end.completionTokens)
                text += piece
                let name = finishName(end.reason)
                Console.out(json ? LocalGeneration.jsonLine(["finish_reason": .string(name), "text": .string(piece)]) : piece + "\n")
                let end = Date()
                let first = firstToken ?? end
                let rate = completionTokens > 1 && end > first ? Double(completionTokens - 1) / end.timeIntervalSince(first) : 0
                // Time to first token counts from the submit (connection set-up included), as a user sees it.
                let ttft = first.timeIntervalSince(submitted) * 1000
                summary += String(format: ", first token after %.1f ms, %d generated at %.1f tok/s, finished: %@",
                                  ttft, completionTokens, rate, name)
            case .failed(let f):
                failure = f.description
            }
        }
        if let failure { throw Failure(description: "the job failed: \(failure)") }
        Console.status("\n[\(summary)]")
        return text
    }

    /// The local mode's name for a job's finish reason.
    static func finishName(_ reason: JobFinishReason) -> String {
        switch reason {
        case .endOfSequence: "eog"
        case .length: "length"
        case .stopString: "stop"
        case .cancelled: "cancelled"
        }
    }
}
