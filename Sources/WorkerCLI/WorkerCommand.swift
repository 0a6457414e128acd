import ArgumentParser
import CaravanTransport
import DaemonSetup
import Foundation
import Logging
import MetricsEndpoint
import ServiceLifecycle
import Worker
import ZeroMQ

/// `caravan-worker`: runs the pipeline stage the coordinator assigns.
struct WorkerCommand: ConfigFileCommand {
    static let configuration = CommandConfiguration(
        commandName: "caravan-worker",
        abstract: "Run layers of a model for a Caravan coordinator.")

    @Option(help: "The coordinator's control endpoint, e.g. tcp://10.0.0.1:7000 (or give --join).")
    var coordinator: String?

    @Option(help: "A join token from `caravanctl invite` (caravan1:...): the coordinator's endpoint and public key in one; replaces --coordinator, --coordinator-key and --insecure.")
    var join: String?

    @Option(name: .customLong("model"), help: "A model file this worker holds (repeatable; none: pull the assigned layers from the coordinator).")
    var models: [String] = []

    @Option(name: .customLong("cache-dir"), help: "Where layers pulled from the coordinator are cached (default: ~/.cache/caravan/layers).")
    var cacheDir: String?

    @Option(name: .customLong("cache-keep-days"), help: "Remove the layer caches of other models unused for this many days when a pull starts; 0 keeps them forever.")
    var cacheKeepDays = 14.0

    @Option(name: .customLong("pull-connections"), help: "Connections a pull of layers uses (1-8); with CURVE each is encrypted by its own libzmq I/O thread.")
    var pullConnections = 2

    @Option(name: .customLong("standby-budget-mib"), help: "Layer cache space for standby copies of the layers next to this worker's own, MiB (pulled in the background once its stage serves, so it can take over a lost neighbour's layers without a pull); 0 keeps none (default: half the free disk space of --cache-dir).")
    var standbyBudgetMiB: UInt64?

    /// Seconds between the stage serving and the standby pull starting; hidden: an operator has no
    /// reason to change it, the tests shorten it.
    @Option(name: .customLong("standby-start-delay"), help: ArgumentHelp(
        "Seconds a worker waits, once its stage serves, before it pulls its standby copies.", visibility: .hidden))
    var standbyStartDelay = 5.0

    /// Seconds a step short of KV room waits for releases; hidden like the standby delay.
    @Option(name: .customLong("kv-release-grace"), help: ArgumentHelp(
        "Seconds a step that finds no KV room waits for the coordinator to release finished sequences.", visibility: .hidden))
    var kvReleaseGrace = 0.5

    /// Seconds between sends of mirrored KV rows; hidden like the standby delay (tests send after
    /// every step to count exact replays).
    @Option(name: .customLong("mirror-flush-interval"), help: ArgumentHelp(
        "Seconds between sends of the KV rows a stage mirrors to its standby holders.", visibility: .hidden))
    var mirrorFlushInterval = 0.1

    @Option(name: .customLong("data-endpoint"), help: "Where the activation socket binds (port * = any free port).")
    var dataEndpoint = "tcp://127.0.0.1:*"

    @Option(help: "The data endpoint other nodes connect to (default: the bound endpoint).")
    var advertise: String?

    @Option(help: "Compute threads.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Worker id (default: host name and process id).")
    var id: String?

    @Option(name: .customLong("memory-limit-mib"), help: "Memory offered to the cluster, MiB (default: available memory).")
    var memoryLimitMiB: UInt64?

    @Option(help: "Relative speed reported to the planner (default: measured).")
    var speed: Double?

    @Flag(help: "Plain ZeroMQ connections (no CURVE encryption); for trusted networks only.")
    var insecure = false

    @Option(name: .customLong("coordinator-key"), help: "The coordinator's CURVE public key (Z85; required unless --insecure).")
    var coordinatorKey: String?

    @Option(name: .customLong("key-file"), help: "CURVE secret key file of this worker (default: a new key each start).")
    var keyFile: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    @Option(help: "HOST:PORT to serve Prometheus metrics on (GET /metrics; port 0 picks a free one, logged as `metrics listening url=...`); default: none.")
    var metrics: String?

    @Option(help: "A config file of `key = value` lines named like these options (see Deploy/worker.conf); options on the command line override it.")
    var config: String?

    /// Where the coordinator is and how to reach it: from `--join`, or from the separate flags.
    func coordinatorAddress() throws -> (endpoint: String, key: String?) {
        if let join {
            guard coordinator == nil, coordinatorKey == nil, !insecure else {
                throw ValidationError("--join already names the coordinator: leave out --coordinator, --coordinator-key and --insecure")
            }
            do {
                let token = try JoinToken(parsing: join)
                return (token.control, token.coordinatorKey)
            } catch {
                throw ValidationError("--join: \(error)")
            }
        }
        guard let coordinator else {
            throw ValidationError("give --coordinator (the coordinator's control endpoint) or --join TOKEN (from `caravanctl invite`)")
        }
        guard insecure || coordinatorKey?.count == 40 else {
            throw ValidationError("give --coordinator-key (the coordinator's 40-character Z85 public key), or --insecure for plain connections")
        }
        return (coordinator, insecure ? nil : coordinatorKey)
    }

    func validate() throws {
        _ = try coordinatorAddress()
        if let metrics, HostPort(metrics) == nil { throw ValidationError("--metrics must be HOST:PORT, got \(metrics)") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard cacheKeepDays >= 0, cacheKeepDays.isFinite else { throw ValidationError("--cache-keep-days must be 0 or more") }
        guard (1...8).contains(pullConnections) else { throw ValidationError("--pull-connections must be 1 to 8") }
        // The coordinator refuses a Register with a speed outside this range, or a longer id.
        if let speed, !(speed.isFinite && speed >= 0 && speed <= 1e9) {
            throw ValidationError("--speed must be a number from 0 to 1e9, got \(speed)")
        }
        if let id, id.isEmpty || id.utf8.count > 128 { throw ValidationError("--id must have 1 to 128 bytes") }
        if let memoryLimitMiB, memoryLimitMiB > 1 << 40 { throw ValidationError("--memory-limit-mib is at most 2^40") }
        if let standbyBudgetMiB, standbyBudgetMiB > 1 << 40 { throw ValidationError("--standby-budget-mib is at most 2^40") }
        guard standbyStartDelay.isFinite, (0...3600).contains(standbyStartDelay) else {
            throw ValidationError("--standby-start-delay must be 0 to 3600 seconds")
        }
        guard kvReleaseGrace.isFinite, (0...60).contains(kvReleaseGrace) else {
            throw ValidationError("--kv-release-grace must be 0 to 60 seconds")
        }
        guard mirrorFlushInterval.isFinite, (0...10).contains(mirrorFlushInterval) else {
            throw ValidationError("--mirror-flush-interval must be 0 to 10 seconds")
        }
    }

    func run() async throws {
        Daemon.bootstrapLogging(level: Logger.Level(rawValue: logLevel) ?? .info)
        let workerID = id ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        let logger = Logger(label: "caravan.worker.\(workerID)")
        let (endpoint, key) = try coordinatorAddress()
        var security = ClusterSecurity.plain
        if key != nil {
            security = .curve(try keyFile.map { path throws in try ClusterSecurity.keyPair(file: path) } ?? CurveKeyPair.generate())
        }
        let config = configuration(workerID: workerID, coordinator: endpoint, coordinatorKey: key, security: security)
        var alongside: [any Service] = []
        if let metrics, let address = HostPort(metrics) {
            alongside.append(MetricsServer(address: address, registry: PrometheusBootstrap.bootstrap(), logger: logger))
        }
        let service = WorkerService(configuration: config, logger: logger)
        try await Daemon.run(service, alongside: alongside, logger: logger)
    }

    /// The worker's configuration for these options, as `workerID`, for the coordinator at
    /// `coordinator` with public key `coordinatorKey` (nil: plain), secured by `security`.
    func configuration(workerID: String, coordinator: String, coordinatorKey: String?,
                       security: ClusterSecurity) -> WorkerConfiguration {
        var config = WorkerConfiguration(
            workerID: workerID, coordinatorEndpoint: coordinator, dataEndpoint: dataEndpoint,
            advertisedDataEndpoint: advertise, modelPaths: models, threads: threads,
            memoryLimit: memoryLimitMiB.map { $0 << 20 }, speed: speed, security: security,
            coordinatorPublicKey: coordinatorKey ?? "")
        if let cacheDir { config.cacheDirectory = cacheDir }
        config.cacheKeepDays = cacheKeepDays > 0 ? cacheKeepDays : nil
        config.pullConnections = pullConnections
        config.standbyBudget = standbyBudgetMiB.map { $0 << 20 }
        config.standbyStartDelay = .milliseconds(Int(standbyStartDelay * 1000))
        config.kvReleaseGrace = .milliseconds(Int(kvReleaseGrace * 1000))
        config.mirrorFlushInterval = .milliseconds(Int(mirrorFlushInterval * 1000))
        return config
    }
}
