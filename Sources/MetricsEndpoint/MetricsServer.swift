import Hummingbird
import Synchronization
import Logging
import Prometheus
import ServiceLifecycle

/// An address given as `HOST:PORT` (`--metrics`, `--listen`).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    /// The host name or address (brackets of an IPv6 literal removed; empty means 127.0.0.1).
    public var host: String
    /// The port (0 = any free port).
    public var port: Int

    /// Parses `HOST:PORT`; nil when it is not one.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "127.0.0.1" : host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why a metrics endpoint could not start.
public struct MetricsServerError: Error, CustomStringConvertible {
    /// The address it was asked to listen on.
    public let address: HostPort
    /// The flag that gave the address, so the message says what to change.
    public let flag: String
    /// What the network stack said (e.g. "Address already in use").
    public let reason: String

    public var description: String {
        "cannot serve metrics on \(address) (\(flag)): \(reason); pick a free port or 0 for any"
    }
}

/// Serves a Prometheus registry as `GET /metrics` (text exposition format 0.0.4) over plain HTTP.
/// A swift-service-lifecycle `Service`: it runs beside a daemon's own service and stops with it.
public struct MetricsServer: Service {
    /// Where it listens.
    public let address: HostPort
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger

    /// The flag named in a start-up error.
    public let flag: String

    /// A server for `registry` on `address`; logs `metrics listening url=...` once bound. A failure
    /// to bind is a ``MetricsServerError`` naming `flag`.
    public init(address: HostPort, registry: PrometheusCollectorRegistry, logger: Logger, flag: String = "--metrics") {
        self.address = address
        self.flag = flag
        self.registry = registry
        self.logger = logger
    }

    /// The Content-Type of the text exposition format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The routes: `/metrics`, and `/` pointing to it.
    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let registry = self.registry
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: Self.contentType],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: "Caravan metrics: GET /metrics\n")))
        }
        return router
    }

    public func run() async throws {
        let (host, logger) = (address.host, logger)
        let bound = Mutex(false)
        let app = Application(
            router: router(),
            configuration: .init(address: .hostname(host, port: address.port), serverName: "caravan-metrics"),
            onServerRunning: { channel in
                bound.withLock { $0 = true }
                let port = channel.localAddress?.port ?? 0
                logger.info("metrics listening", metadata: ["url": "http://\(HostPort("\(host):\(port)")?.description ?? host)/metrics"])
            },
            logger: logger)
        do {
            try await app.run()
        } catch where !bound.withLock({ $0 }) {
            // Before it is bound the only failures are the address's (in use, not ours, not
            // resolvable); NIO's text names a system call, not the flag the operator typed.
            throw MetricsServerError(address: address, flag: flag, reason: "\(error)")
        }
    }
}
