import ArgumentParser
import CaravanWire
import CaravanTransport
import DaemonSetup
import Coordinator
import Foundation
import Logging
import MetricsEndpoint
import ServiceLifecycle

/// `caravan-coordinator`: plans a model over workers and serves jobs.
struct CoordinatorCommand: ConfigFileCommand {
    static let configuration = CommandConfiguration(
        commandName: "caravan-coordinator",
        abstract: "Split a model's layers over Caravan workers and serve generation jobs.")

    @Option(help: "The model file (GGUF).")
    var model: String

    @Option(help: "Control endpoint workers connect to.")
    var control = "tcp://127.0.0.1:7000"

    @Option(help: "Client endpoint for jobs.")
    var clients = "tcp://127.0.0.1:7100"

    @Option(help: "Result endpoint the last stage sends to (default: any free port on the control host).")
    var results: String?

    @Option(name: .customLong("model-source"), help: "Where workers without the model file pull its bytes (default: any free port on the control host).")
    var modelSource: String?

    @Option(help: "Workers to wait for before planning.")
    var workers = 1

    @Option(name: .customLong("activation-dtype"), help: "Activations between stages: f32 (the default: exactly the single-node tokens) or f16 (half the bytes per hop, for slow links; rounds the residual stream, so greedy output may part from one machine's at near-ties).")
    var activationDType = "f32"

    @Option(help: "Context (positions per sequence).")
    var ctx = 2048

    @Option(name: .customLong("batch-sequences"), help: "Sequences per step the KV caches are sized for.")
    var batchSequences = 4

    @Option(name: .customLong("batch-rows"), help: "Most rows per step.")
    var batchRows = 512

    @Option(help: "Steps in flight at once, each with its own sequences (0: one per stage, at least 2).")
    var lanes = 0

    @Option(name: .customLong("step-timeout"), help: "Seconds a pipeline step may take.")
    var stepTimeout = 60.0

    @Option(name: .customLong("authorized-workers"), help: "File of worker public keys (Z85, one per line, # comments; `caravanctl keygen --role worker` appends to it): only these register, post results and pull model bytes. Required with CURVE.")
    var authorizedWorkers: String?

    @Option(name: .customLong("authorized-clients"), help: "File of client public keys: these submit jobs and read, cancel and attach to their own jobs. Required with CURVE unless --open-clients.")
    var authorizedClients: String?

    @Option(name: .customLong("authorized-admins"), help: "File of admin public keys: everything a client may do, on every job; drain workers, preview plans.")
    var authorizedAdmins: String?

    @Option(name: .customLong("authorized-keys"), help: "Legacy: a file of keys that have every role (worker, client and admin).")
    var authorizedKeys: String?

    @Flag(name: .customLong("open-clients"), help: "Let any key that knows the coordinator's public key submit jobs (as a client; it still sees only its own jobs). Logged loudly and shown by `caravanctl status`.")
    var openClients = false

    @Option(name: .customLong("max-jobs-per-client"), help: "Running and queued jobs one client key may hold at once (admins: no limit beyond --max-jobs).")
    var maxJobsPerClient = 64

    @Option(name: .customLong("heartbeat-interval"), help: "Seconds between heartbeats.")
    var heartbeatInterval = 0.25

    @Option(name: .customLong("heartbeat-timeout"), help: "Seconds of silence after which a worker is lost (and workers register again).")
    var heartbeatTimeout = 2.0

    @Option(name: .customLong("connection-grace"), help: "Seconds a worker whose control connection its own end closed (the process exited or was killed) may take to connect again before it is lost, without waiting for --heartbeat-timeout (default: --heartbeat-interval + 0.15); a frozen worker or a cut link stays on the heartbeat timeout.")
    var connectionGrace: Double?

    @Option(name: .customLong("queue-timeout"), help: "Seconds a job may wait for a pipeline (start-up, re-plan, too few workers) before it fails.")
    var queueTimeout = 300.0

    @Option(name: .customLong("state-dir"), help: "Directory of the job journal (jobs survive a coordinator restart); 'none' keeps jobs in memory only.")
    var stateDir = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/state/caravan").path

    @Option(name: .customLong("rebalance-interval"), help: "Seconds between re-plans for a slow worker (hysteresis); 0 turns slow-worker re-planning off.")
    var rebalanceInterval = 30.0

    @Option(name: .customLong("join-settle"), help: "Seconds a worker joining a serving cluster (new, or back after a freeze or a cut link) must be heard steadily before it gets layers; 0 re-plans at once.")
    var joinSettle = 5.0

    @Option(name: .customLong("slow-factor"), help: "Re-plan for a slow worker only when the new plan's predicted bottleneck step time is below this fraction of today's.")
    var slowFactor = 0.75

    @Option(name: .customLong("drain-timeout"), help: "Seconds SIGTERM waits for running jobs.")
    var drainTimeout = 10.0

    @Option(name: .customLong("max-jobs"), help: "Unfinished jobs (running or waiting) the coordinator holds at most; more are refused until some end.")
    var maxJobs = 4096

    @Flag(help: "Plain ZeroMQ connections (no CURVE encryption); for trusted networks only.")
    var insecure = false

    @Option(name: .customLong("key-file"), help: "CURVE secret key file; created with a new key when missing. Workers and clients need its public key (logged at start as public_key).")
    var keyFile = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".config/caravan/coordinator.key").path

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    @Option(help: "HOST:PORT to serve Prometheus metrics on (GET /metrics; port 0 picks a free one, logged as `metrics listening url=...`); default: none.")
    var metrics: String?

    @Option(help: "A config file of `key = value` lines named like these options (see Deploy/coordinator.conf); options on the command line override it.")
    var config: String?

    func validate() throws {
        guard ["f16", "f32"].contains(activationDType) else { throw ValidationError("--activation-dtype is f16 or f32") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard heartbeatInterval > 0, heartbeatTimeout > heartbeatInterval, drainTimeout >= 0 else {
            throw ValidationError("need 0 < --heartbeat-interval < --heartbeat-timeout and --drain-timeout >= 0")
        }
        guard queueTimeout > 0, rebalanceInterval >= 0, joinSettle >= 0, (connectionGrace ?? 0) >= 0, slowFactor > 0, slowFactor < 1 else {
            throw ValidationError("need --queue-timeout > 0, --rebalance-interval >= 0, --join-settle >= 0, --connection-grace >= 0 and 0 < --slow-factor < 1")
        }
        // Seconds become milliseconds with Int(_:): finite and at most a million seconds.
        let seconds = [stepTimeout, heartbeatInterval, heartbeatTimeout, queueTimeout, rebalanceInterval, joinSettle, drainTimeout,
                       connectionGrace ?? 0]
        guard seconds.allSatisfy({ $0.isFinite && $0 <= 1_000_000 }) else {
            throw ValidationError("durations must be finite numbers of seconds, at most 1000000")
        }
        if let metrics, HostPort(metrics) == nil { throw ValidationError("--metrics must be HOST:PORT, got \(metrics)") }
        guard maxJobs >= 1 else { throw ValidationError("--max-jobs must be positive") }
        guard maxJobsPerClient >= 1 else { throw ValidationError("--max-jobs-per-client must be positive") }
        guard lanes >= 0 else { throw ValidationError("--lanes must be 0 (automatic) or positive") }
        guard workers >= 1, ctx >= 1, batchSequences >= 1, batchRows >= 1, stepTimeout > 0 else {
            throw ValidationError("--workers, --ctx, --batch-sequences, --batch-rows and --step-timeout must be positive")
        }
    }

    func run() async throws {
        Daemon.bootstrapLogging(level: Logger.Level(rawValue: logLevel) ?? .info)
        let logger = Logger(label: "caravan.coordinator")
        var security = ClusterSecurity.plain
        var access: AccessList?
        if !insecure {
            try FileManager.default.createDirectory(at: URL(fileURLWithPath: keyFile).deletingLastPathComponent(),
                                                    withIntermediateDirectories: true)
            security = .curve(try ClusterSecurity.keyPair(file: keyFile))
            // Secure by default: no worker list, or no client list without --open-clients, is an
            // error before anything binds.
            let files = AccessList.Files(workers: authorizedWorkers, clients: authorizedClients, admins: authorizedAdmins,
                                         allRoles: authorizedKeys)
            access = try AccessList(files: files, openClients: openClients)
            if let problem = AccessList.startupProblem(access) { throw ValidationError(problem) }
        }
        var configuration = configuration(security: security, access: access)
        var alongside: [any Service] = []
        if let metrics, let address = HostPort(metrics) {
            configuration.recordsMetrics = true
            alongside.append(MetricsServer(address: address, registry: PrometheusBootstrap.bootstrap(), logger: logger))
        }
        let service = CoordinatorService(configuration: configuration, logger: logger)
        try await Daemon.run(service, alongside: alongside, logger: logger)
    }

    /// The coordinator's configuration for these options, with the `security` and `access` that
    /// ``run()`` reads from the key file and the allow-list files (seconds become milliseconds).
    func configuration(security: ClusterSecurity, access: AccessList?) -> CoordinatorConfiguration {
        var configuration = CoordinatorConfiguration(
            modelPath: model, controlEndpoint: control, clientsEndpoint: clients, resultsEndpoint: results,
            expectedWorkers: workers, activationDType: activationDType == "f32" ? .f32 : .f16, contextTokens: ctx,
            batchSequences: batchSequences, maxBatchRows: batchRows,
            heartbeatInterval: .milliseconds(Int(heartbeatInterval * 1000)),
            heartbeatTimeout: .milliseconds(Int(heartbeatTimeout * 1000)), stepDeadline: .milliseconds(Int(stepTimeout * 1000)),
            security: security)
        configuration.modelSourceEndpoint = modelSource
        configuration.lanes = lanes > 0 ? lanes : nil
        configuration.access = access
        configuration.maxJobsPerClient = maxJobsPerClient
        configuration.drainTimeout = .milliseconds(Int(drainTimeout * 1000))
        configuration.queueTimeout = .milliseconds(Int(queueTimeout * 1000))
        configuration.maxUnfinishedJobs = maxJobs
        configuration.stateDirectory = stateDir == "none" ? nil : stateDir
        configuration.rebalance.enabled = rebalanceInterval > 0
        configuration.rebalance.minimumInterval = .milliseconds(Int(rebalanceInterval * 1000))
        configuration.rebalance.slowFactor = slowFactor
        configuration.joinSettle = .milliseconds(Int(joinSettle * 1000))
        configuration.connectionGrace = connectionGrace.map { .milliseconds(Int($0 * 1000)) }
        return configuration
    }
}
