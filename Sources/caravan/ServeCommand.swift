import ArgumentParser
import ClusterSupport
import Foundation
import Logging
import OpenAIServer
import ServiceLifecycle
import ZeroMQ

/// `caravan serve`: an OpenAI-compatible HTTP API in front of a Caravan coordinator.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions) over a cluster.",
        discussion: "Plain HTTP on the address given: bind to 127.0.0.1 or put it behind a TLS reverse proxy.")

    @OptionGroup var cluster: CoordinatorOptions

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

    func validate() throws {
        guard cluster.endpoint != nil else { throw ValidationError("serve needs --coordinator (or CARAVAN_COORDINATOR)") }
        guard (try? Self.hostPort(listen)) != nil else { throw ValidationError("--listen must be HOST:PORT, got \(listen)") }
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
    }

    static func hostPort(_ s: String) throws -> (String, Int) {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT")
        }
        var host = String(s[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    func run() async throws {
        guard let endpoint = cluster.endpoint else { throw ValidationError("serve needs --coordinator") }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "caravan.serve")
        let keys = try keyFile.map { path throws -> CurveKeyPair in try ClusterSecurity.keyPair(file: path) }
        let gateway = ClusterGateway(endpoint: endpoint, serverKey: cluster.insecure ? nil : cluster.key, keys: keys,
                                     modelName: modelName, timeout: .seconds(timeout))
        let (host, port) = try Self.hostPort(listen)
        let server = OpenAIServer(gateway: gateway, maxBodyBytes: maxBodyBytes, logger: logger)
        let app = server.application(host: host, port: port) { bound in
            logger.info("listening", metadata: ["url": "http://\(host):\(bound)", "coordinator": "\(endpoint)"])
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: app, successTerminationBehavior: .gracefullyShutdownGroup,
                             failureTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}
