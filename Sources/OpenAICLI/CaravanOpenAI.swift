import ArgumentParser
import CaravanTransport
import DaemonSetup
import Foundation
import Logging
import MetricsEndpoint
import OpenAIServer
import ServiceLifecycle
import ZeroMQ

/// `caravan-openai`: an OpenAI-compatible HTTP API in front of a Caravan coordinator. Its own
/// executable, so that the engine's `caravan` binary does not carry SwiftNIO and Hummingbird (a
/// third of its size, and ~3 MiB more resident in every local run).
struct CaravanOpenAI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caravan-openai",
        abstract: "Serve an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions) over a cluster.",
        discussion: "Plain HTTP on the address given: bind to 127.0.0.1 or put it behind a TLS reverse proxy.")

    @Option(name: .customLong("coordinator"),
            help: "The coordinator's client endpoint (e.g. tcp://127.0.0.1:7100; default: $CARAVAN_COORDINATOR).")
    var coordinator: String?

    @Option(name: .customLong("coordinator-key"),
            help: "The coordinator's CURVE public key (default: $CARAVAN_COORDINATOR_KEY).")
    var coordinatorKey: String?

    @Flag(help: "Plain TCP to the coordinator (for one started with --insecure).")
    var insecure = false

    @Option(name: .customLong("key-file"), help: "This client's CURVE secret key file (created when missing); default: a new key.")
    var keyFile: String?

    @Option(help: "HOST:PORT to listen on (port 0 picks a free one; the log says which).")
    var listen = "127.0.0.1:8080"

    @Option(name: .customLong("model-name"), help: "The model name to report (default: the coordinator's model file name).")
    var modelName: String?

    @Option(help: "Seconds to wait for each answer of the coordinator (the next token, a status).")
    var timeout: Int = 60

    @Option(name: .customLong("max-body-bytes"), help: "Largest request body accepted.")
    var maxBodyBytes = OpenAIServer.defaultMaxBodyBytes

    @Option(help: "HOST:PORT to serve Prometheus metrics on (GET /metrics, a listener of its own; port 0 picks a free one); default: none.")
    var metrics: String?

    @Option(name: .customLong("api-keys"), help: "File of API keys (one per line, # comments, at least 16 characters each): requests must send `Authorization: Bearer KEY` (else 401). Default: $CARAVAN_API_KEYS; without one, no authentication (logged).")
    var apiKeys: String?

    @Option(name: .customLong("max-concurrent-requests"), help: "Completions running at once at most (more: 429 at once). Keep it at or below the coordinator's --max-jobs-per-client: every request runs as this server's one client key.")
    var maxConcurrentRequests = 32

    func validate() throws {
        guard endpoint != nil else { throw ValidationError("caravan-openai needs --coordinator (or CARAVAN_COORDINATOR)") }
        guard insecure || key?.count == 40 else {
            throw ValidationError("give --coordinator-key (40 characters; or CARAVAN_COORDINATOR_KEY), or --insecure")
        }
        guard (try? Self.hostPort(listen)) != nil else { throw ValidationError("--listen must be HOST:PORT, got \(listen)") }
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        if let metrics, HostPort(metrics) == nil { throw ValidationError("--metrics must be HOST:PORT, got \(metrics)") }
        guard maxConcurrentRequests >= 1 else { throw ValidationError("--max-concurrent-requests must be positive") }
    }

    private static func environment(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// The coordinator's endpoint (flag, then environment).
    var endpoint: String? { coordinator ?? Self.environment("CARAVAN_COORDINATOR") }

    /// The coordinator's public key (flag, then environment).
    var key: String? { coordinatorKey ?? Self.environment("CARAVAN_COORDINATOR_KEY") }

    static func hostPort(_ s: String) throws -> (String, Int) {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT")
        }
        var host = String(s[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    func run() async throws {
        guard let endpoint else { throw ValidationError("caravan-openai needs --coordinator") }
        Daemon.bootstrapLogging(level: .info)
        let logger = Logger(label: "caravan.serve")
        var alongside: [any Service] = []
        if let metrics, let address = HostPort(metrics) {
            alongside.append(MetricsServer(address: address, registry: PrometheusBootstrap.bootstrap(), logger: logger))
        }
        let keys = try keyFile.map { path throws -> CurveKeyPair in try ClusterSecurity.keyPair(file: path) }
        let gateway = try ClusterGateway(endpoint: endpoint, serverKey: insecure ? nil : key, keys: keys,
                                         modelName: modelName, timeout: .seconds(timeout),
                                         maxConcurrentJobs: maxConcurrentRequests)
        let (host, port) = try Self.hostPort(listen)
        let keyFile = apiKeys ?? Self.environment("CARAVAN_API_KEYS")
        let accepted = try keyFile.map { path throws -> APIKeys in try APIKeys(file: path) }
        let server = OpenAIServer(gateway: gateway, maxBodyBytes: maxBodyBytes, apiKeys: accepted, logger: logger)
        if accepted == nil {
            logger.warning("no --api-keys: anyone who reaches this address may run jobs; bind to 127.0.0.1 or give an API key file")
        }
        let app = server.application(host: host, port: port) { bound in
            logger.info("listening", metadata: ["url": "http://\(host):\(bound)", "coordinator": "\(endpoint)",
                                                "api_keys": "\(accepted?.count ?? 0)", "max_concurrent": "\(maxConcurrentRequests)"])
        }
        try await Daemon.run(app, alongside: alongside, logger: logger)
    }
}
