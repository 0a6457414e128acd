import Foundation
import TestSupport
import ZeroMQ

/// Real `caravan-coordinator` and `caravan-worker` processes on 127.0.0.1 for integration tests.
/// Every wait is bounded; ``stop()`` terminates every process it started (SIGTERM, then SIGKILL).
final class ClusterProcesses: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let directory: URL
    let binaries: URL
    private(set) var coordinator: Process?
    private(set) var workers: [Process] = []
    private(set) var controlEndpoint = ""
    private(set) var clientsEndpoint = ""
    private(set) var resultsEndpoint = ""
    private(set) var workerDataEndpoints: [String] = []
    private(set) var workerDataKeys: [String] = []
    /// The coordinator's CURVE public key.
    private(set) var coordinatorKey = ""
    /// The allow-lists of a CURVE coordinator (in ``directory``): every worker ``start`` and
    /// ``addWorker`` launch gets a key listed in `authorized_workers`; `admin.key` is listed in
    /// `authorized_admins`. Clients are open (`--open-clients`) unless the test gives its own
    /// client list.
    var authorizedWorkers: URL { directory.appendingPathComponent("authorized_workers") }
    var authorizedAdmins: URL { directory.appendingPathComponent("authorized_admins") }
    var authorizedClients: URL { directory.appendingPathComponent("authorized_clients") }
    /// The admin key's secret key file (for `caravanctl --key-file`).
    var adminKeyFile: String { directory.appendingPathComponent("admin.key").path }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-cluster-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        binaries = try Self.locateBinaries()
    }

    /// The directory holding the built executables: `$CARAVAN_BIN` when set (the long runs use a
    /// release build's daemons: a debug build's kernels are too slow at the 70B width), else next
    /// to the test bundle (`.build/<config>/`).
    static func locateBinaries() throws -> URL {
        var candidates: [URL] = []
        if let dir = ProcessInfo.processInfo.environment["CARAVAN_BIN"], !dir.isEmpty {
            candidates.append(URL(fileURLWithPath: dir))
        }
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        candidates.append(Bundle.main.bundleURL)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug"))
        for dir in candidates where FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("caravan-worker").path)
            && FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("caravanctl").path)
            && FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("caravan-coordinator").path) {
            return dir
        }
        throw Failure(description: "caravan-worker/caravan-coordinator not found in \(candidates.map(\.path)); run `swift build --build-tests`")
    }

    private func launch(_ name: String, _ arguments: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = binaries.appendingPathComponent(name)
        p.arguments = arguments
        let logURL = directory.appendingPathComponent(log)
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    func log(_ name: String) -> String {
        (try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)) ?? ""
    }

    /// Waits (at most `timeout`) until `name`'s log matches `pattern`; returns the first capture group.
    func waitForLog(_ name: String, _ pattern: String, timeout: Duration) throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = log(name)
            if let m = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) {
                if m.numberOfRanges > 1, let r = Range(m.range(at: 1), in: text) { return String(text[r]) }
                return ""
            }
            if let c = coordinator, !c.isRunning { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw Failure(description: "timed out waiting for /\(pattern)/ in \(name):\n\(log(name).suffix(3000))")
    }

    /// Starts a plain-TCP coordinator and one worker offering `memoryMiB`, without waiting for a plan.
    func startInsecure(model: String, memoryMiB: Int, extraCoordinatorArguments: [String] = []) throws {
        coordinator = try launch("caravan-coordinator", [
            "--insecure", "--model", model, "--control", "tcp://127.0.0.1:*", "--clients", "tcp://127.0.0.1:*",
            "--workers", "1", "--ctx", "256", "--state-dir", "none",
        ] + extraCoordinatorArguments, log: "coordinator.log")
        self.model = model
        controlEndpoint = try waitForLog("coordinator.log", "control=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(60))
        clientsEndpoint = try waitForLog("coordinator.log", "clients=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        workers.append(try launch("caravan-worker", [
            "--insecure", "--coordinator", controlEndpoint, "--model", model, "--threads", "1",
            "--memory-limit-mib", "\(memoryMiB)", "--id", "small",
        ], log: "worker-0.log"))
    }

    /// The join token `caravanctl invite` printed for the coordinator (set by `start` when some
    /// worker joins with it).
    private(set) var joinToken = ""

    /// Asks `caravanctl invite` for a join token of the running coordinator (its control and
    /// client endpoints and the public key derived from its key file).
    func invite() throws -> String {
        let out = try CLIRun.run(binaries.appendingPathComponent("caravanctl"), [
            "invite", "--control", controlEndpoint, "--clients", clientsEndpoint,
            "--key-file", directory.appendingPathComponent("coordinator.key").path,
        ], in: directory, timeout: 30)
        guard out.status == 0 else { throw Failure(description: "caravanctl invite failed: \(out.stderr)") }
        return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Makes a key pair whose secret key is in `name` (mode 0600) and lists its public key in
    /// `list` (when given); returns the pair. An existing key file is reused.
    @discardableResult
    func makeKey(_ name: String, listIn list: URL?) throws -> CurveKeyPair {
        let file = directory.appendingPathComponent(name)
        if let text = try? String(contentsOf: file, encoding: .utf8) {
            let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return try CurveKeyPair(publicKey: try CurveKeyPair.publicKey(forSecretKey: secret), secretKey: secret)
        }
        let keys = try CurveKeyPair.generate()
        guard FileManager.default.createFile(atPath: file.path, contents: Data((keys.secretKey + "\n").utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw Failure(description: "cannot write \(file.path)")
        }
        if let list { try appendLine("\(keys.publicKey) \(name)", to: list) }
        return keys
    }

    /// Appends `line` to `file` (created when missing).
    func appendLine(_ line: String, to file: URL) throws {
        if !FileManager.default.fileExists(atPath: file.path) { FileManager.default.createFile(atPath: file.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((line + "\n").utf8))
    }

    /// The admin key pair (made on first use, listed in `authorized_admins`).
    func adminKeys() throws -> CurveKeyPair { try makeKey("admin.key", listIn: authorizedAdmins) }

    /// The allow-list arguments of a CURVE coordinator: worker and admin lists, and
    /// `--open-clients` unless `extra` names a client list of its own.
    private func accessArguments(_ extra: [String]) throws -> [String] {
        try adminKeys()
        if !FileManager.default.fileExists(atPath: authorizedWorkers.path) {
            FileManager.default.createFile(atPath: authorizedWorkers.path, contents: Data("# workers\n".utf8))
        }
        let ownClients = extra.contains("--authorized-clients") || extra.contains("--authorized-keys")
        return ["--authorized-workers", authorizedWorkers.path, "--authorized-admins", authorizedAdmins.path]
            + (ownClients ? [] : ["--open-clients"])
    }

    /// The `--key-file` arguments of CURVE worker `i` (its key listed in `authorized_workers`).
    private func workerKeyArguments(_ i: Int) throws -> [String] {
        try makeKey("worker-\(i).key", listIn: authorizedWorkers)
        return ["--key-file", directory.appendingPathComponent("worker-\(i).key").path]
    }

    /// Starts a coordinator and `workers` workers and waits until the pipeline serves. Workers in
    /// `withoutModel` get no `--model` (they pull their layers from the coordinator); workers in
    /// `joining` get only `--join TOKEN` (from `caravanctl invite`) instead of the coordinator's
    /// endpoint and key; with `oneByOne` each worker is started once the previous one registered
    /// (join order = stage order).
    func start(workers count: Int, model: String, extraCoordinatorArguments: [String] = [],
               extraWorkerArguments: (Int) -> [String] = { _ in [] }, withoutModel: Set<Int> = [], joining: Set<Int> = [],
               oneByOne: Bool = false) throws {
        coordinator = try launch("caravan-coordinator", [
            "--key-file", directory.appendingPathComponent("coordinator.key").path, "--model", model, "--control", "tcp://127.0.0.1:*", "--clients", "tcp://127.0.0.1:*",
            "--workers", "\(count)", "--ctx", "256", "--batch-sequences", "4", "--step-timeout", "30",
            "--heartbeat-timeout", "4", "--state-dir", directory.appendingPathComponent("state").path,
        ] + (try accessArguments(extraCoordinatorArguments)) + extraCoordinatorArguments, log: "coordinator.log")
        self.model = model
        self.extraCoordinatorArguments = extraCoordinatorArguments
        self.workerCount = count
        controlEndpoint = try waitForLog("coordinator.log", "control=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(60))
        clientsEndpoint = try waitForLog("coordinator.log", "clients=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        resultsEndpoint = try waitForLog("coordinator.log", "results=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(5))
        coordinatorKey = try waitForLog("coordinator.log", "public_key=(\\S{40})", timeout: .seconds(5))
        if !joining.isEmpty { joinToken = try invite() }
        for i in 0..<count {
            let coordinator = joining.contains(i) ? ["--join", joinToken]
                : ["--coordinator-key=\(coordinatorKey)", "--coordinator", controlEndpoint]
            workers.append(try launch("caravan-worker", coordinator + [
                "--threads", "1", "--speed", "1", "--id", "worker-\(i)",
            ] + (try workerKeyArguments(i)) + (withoutModel.contains(i) ? [] : ["--model", model]) + extraWorkerArguments(i), log: "worker-\(i).log"))
            if oneByOne {
                do {
                    _ = try waitForLog("coordinator.log", "worker=worker-\(i)[^0-9]", timeout: .seconds(60))
                } catch {
                    throw Failure(description: "\(error)\nworker-\(i).log (running: \(workers[i].isRunning)):\n\(log("worker-\(i).log").suffix(3000))")
                }
            }
        }
        for i in 0..<count {
            workerDataEndpoints.append(try waitForLog("worker-\(i).log", "data=(tcp://[0-9.]+:[0-9]+)", timeout: .seconds(60)))
            workerDataKeys.append(try waitForLog("worker-\(i).log", "data_key=(\\S{40})", timeout: .seconds(5)))
        }
        _ = try waitForLog("coordinator.log", "(serving)", timeout: .seconds(60))
    }

    /// Starts `workers` workers (the test model, join-settle 0) on a coordinator that admits as
    /// clients only the keys in `authorized_clients` (no `--open-clients`), listing there first a
    /// new key `<name>.key` for each of `clients`; returns those keys in order.
    func startWithClientList(workers: Int, clients: [String]) throws -> [CurveKeyPair] {
        let keys = try clients.map { try makeKey("\($0).key", listIn: authorizedClients) }
        try start(workers: workers, model: try TestModel.requirePath(),
                  extraCoordinatorArguments: ["--authorized-clients", authorizedClients.path, "--join-settle", "0"])
        return keys
    }

    private var model = ""
    private var extraCoordinatorArguments: [String] = []
    private var workerCount = 0
    private var retired: [Process] = []

    /// Stops the coordinator with SIGTERM (bounded wait); returns whether it exited by itself.
    func terminateCoordinator(timeout: TimeInterval) -> Bool {
        guard let c = coordinator else { return false }
        c.terminate()
        let deadline = Date().addingTimeInterval(timeout)
        while c.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let exited = !c.isRunning
        if !exited { kill(c.processIdentifier, SIGKILL) }
        c.waitUntilExit()
        retired.append(c)
        return exited
    }

    /// Starts a new coordinator on the same endpoints and key; waits until the workers registered
    /// again and it serves.
    func restartCoordinator() throws {
        coordinator = try launch("caravan-coordinator", [
            "--key-file", directory.appendingPathComponent("coordinator.key").path, "--model", model,
            "--control", controlEndpoint, "--clients", clientsEndpoint, "--workers", "\(workerCount)", "--ctx", "256",
            "--batch-sequences", "4", "--step-timeout", "30", "--heartbeat-timeout", "4",
            "--state-dir", directory.appendingPathComponent("state").path,
        ] + (try accessArguments(extraCoordinatorArguments)) + extraCoordinatorArguments, log: "coordinator-2.log")
        _ = try waitForLog("coordinator-2.log", "(serving)", timeout: .seconds(60))
    }

    /// Kills the coordinator with SIGKILL (a crash: nothing is flushed or drained).
    func killCoordinator() {
        guard let c = coordinator else { return }
        kill(c.processIdentifier, SIGKILL)
        c.waitUntilExit()
        retired.append(c)
    }

    /// Starts one more worker (`worker-N`) with `arguments` added; returns its index.
    @discardableResult
    func addWorker(_ arguments: [String] = []) throws -> Int {
        let i = workers.count
        let security = coordinatorKey.isEmpty ? ["--insecure"] : ["--coordinator-key=\(coordinatorKey)"] + (try workerKeyArguments(i))
        workers.append(try launch("caravan-worker", security + [
            "--coordinator", controlEndpoint, "--model", model, "--threads", "1", "--speed", "1", "--id", "worker-\(i)",
        ] + arguments, log: "worker-\(i).log"))
        return i
    }

    /// The coordinator's CURVE key pair (from its key file; CURVE clusters only).
    func coordinatorKeyPair() throws -> CurveKeyPair {
        let text = try String(contentsOf: directory.appendingPathComponent("coordinator.key"), encoding: .utf8)
        let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return try CurveKeyPair(publicKey: try CurveKeyPair.publicKey(forSecretKey: secret), secretKey: secret)
    }

    /// Whether every process is still running.
    var allRunning: Bool { (coordinator?.isRunning ?? false) && workers.allSatisfy(\.isRunning) }

    /// Terminates every process (SIGTERM, then SIGKILL after 5 s) and waits for them.
    func stop() {
        let all = workers + (coordinator.map { [$0] } ?? [])
        for p in all where p.isRunning { p.terminate() }
        let deadline = Date().addingTimeInterval(5)
        while all.contains(where: \.isRunning), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        for p in all where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in all { p.waitUntilExit() }
    }

    /// ``stop()``, then removes ``directory`` (logs, keys, state): a test's `defer`.
    func stopAndRemove() {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
