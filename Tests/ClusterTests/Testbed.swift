import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TestSupport

/// A cluster of real hosts on this machine, driven through `Deploy/testbed` (the script a developer
/// uses by hand): one network namespace per host when running as root, else processes on
/// 127.0.0.1 (``Mode/loopback``, where cutting links is impossible). Every call is bounded.
final class Testbed: @unchecked Sendable {
    /// How hosts are separated.
    enum Mode: String, Sendable {
        /// A network namespace per host, with its own address on a bridge.
        case netns
        /// Processes on 127.0.0.1 (no root needed; no link faults).
        case loopback
    }

    /// A script call failed or timed out.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The repository's `Deploy/testbed`.
    static let script: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Deploy/testbed")

    /// Namespaces work here (root, `ip netns` usable) and are not turned off with
    /// `CARAVAN_TESTBED_MODE=loopback`.
    static let namespacesAvailable: Bool = {
        guard geteuid() == 0, ProcessInfo.processInfo.environment["CARAVAN_TESTBED_MODE"] != "loopback" else { return false }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "ip netns add cvprobe$$ && ip netns del cvprobe$$"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    let mode: Mode
    let name: String
    /// The bed's state directory (logs `hN.log`, pid files).
    let directory: URL
    private let environment: [String: String]
    /// The coordinator's client endpoint and CURVE public key.
    private(set) var clientsEndpoint = ""
    private(set) var coordinatorKey = ""

    /// Starts a bed of `workers` workers (after removing any stale bed of the same `name`), with
    /// extra daemon flags (each flag one word, no spaces), and waits until it serves.
    init(name: String, subnet: String, workers: Int, coordinatorArguments: [String] = [], workerArguments: [String] = [],
         mode: Mode? = nil) throws {
        self.mode = mode ?? (Self.namespacesAvailable ? .netns : .loopback)
        self.name = name
        directory = URL(fileURLWithPath: "/tmp/caravan-testbed-\(name)")
        var env = ProcessInfo.processInfo.environment
        env["BIN"] = try ClusterProcesses.locateBinaries().path
        env["MODEL"] = try TestModel.requirePath()
        env["CARAVAN_TB_NAME"] = name
        env["CARAVAN_TB_NET"] = subnet
        env["CARAVAN_TB_DIR"] = directory.path
        env["CARAVAN_TB_MODE"] = self.mode.rawValue
        env["CARAVAN_TB_COORD_ARGS"] = coordinatorArguments.joined(separator: " ")
        env["CARAVAN_TB_WORKER_ARGS"] = workerArguments.joined(separator: " ")
        env["CARAVAN_TB_WAIT"] = "60"
        environment = env
        _ = try? run(["down"], timeout: 30)
        let out: String
        do {
            out = try run(["up", "\(workers)"], timeout: 150)
        } catch {
            // A bed that never came up is the test machine's trouble, not a result: say so loudly
            // (with every host's log, which `up` prints) and try once more from scratch.
            print("testbed \(name): up failed, retrying once: \(error)")
            _ = try? run(["down"], timeout: 30)
            out = try run(["up", "\(workers)"], timeout: 150)
        }
        for line in out.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let value = line[line.index(after: eq)...].trimmingCharacters(in: CharacterSet(charactersIn: "'"))
            switch line[..<eq] {
            case "CARAVAN_CLIENTS": clientsEndpoint = value
            case "CARAVAN_COORDINATOR_KEY": coordinatorKey = value
            default: break
            }
        }
        guard !clientsEndpoint.isEmpty, coordinatorKey.count == 40 else {
            throw Failure(description: "testbed up printed no endpoint/key:\n\(out)")
        }
    }

    /// Runs `Deploy/testbed ARGS` (killed after `timeout` seconds); returns its standard output,
    /// throws with its error output when it fails.
    @discardableResult
    func run(_ arguments: [String], timeout: TimeInterval = 30) throws -> String {
        let r = try CLIRun.run(Self.script, arguments, in: FileManager.default.temporaryDirectory, timeout: timeout,
                               environment: environment)
        guard !r.timedOut, r.status == 0 else {
            throw Failure(description: "testbed \(arguments.joined(separator: " ")) \(r.timedOut ? "timed out after \(timeout) s" : "failed (\(r.status))"): \(r.stderr)\(r.stdout)")
        }
        return r.stdout
    }

    /// kill -9 host `i`'s daemon (0 = the coordinator).
    func kill(_ i: Int) throws { try run(["kill", "\(i)"]) }
    /// SIGSTOP host `i`'s daemon.
    func freeze(_ i: Int) throws { try run(["freeze", "\(i)"]) }
    /// SIGCONT host `i`'s daemon.
    func thaw(_ i: Int) throws { try run(["thaw", "\(i)"]) }
    /// Takes host `i`'s link down (namespaces only).
    func cut(_ i: Int) throws { try run(["cut", "\(i)"]) }
    /// Brings host `i`'s link up again.
    func heal(_ i: Int) throws { try run(["heal", "\(i)"]) }
    /// Drops `percent` % of host `i`'s packets (0 = off; namespaces only).
    func loss(_ i: Int, percent: Int) throws { try run(["loss", "\(i)", "\(percent)"]) }
    /// Lets host `i`'s daemon run only `percent` % of the time (100 = off).
    func slow(_ i: Int, percent: Int) throws { try run(["slow", "\(i)", "\(percent)"]) }
    /// Starts host `i`'s daemon again (same id and address).
    func restart(_ i: Int) throws { try run(["restart", "\(i)"], timeout: 60) }

    /// Adds a worker host; returns its index (its worker id is `host-N`).
    func add() throws -> Int {
        let out = try run(["add"], timeout: 90).trimmingCharacters(in: .whitespacesAndNewlines)
        guard out.hasPrefix("h"), let i = Int(out.dropFirst()) else { throw Failure(description: "testbed add printed \(out)") }
        return i
    }

    /// Host `i`'s daemon log.
    func log(_ i: Int) -> String {
        (try? String(contentsOf: directory.appendingPathComponent("h\(i).log"), encoding: .utf8)) ?? ""
    }

    /// Whether host `i`'s daemon process is alive (running or stopped).
    func isAlive(_ i: Int) -> Bool {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("h\(i).pid"), encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
              let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        // Field 3 (after the parenthesised name) is the state; Z = exited.
        guard let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// The script's `status` table.
    func status() -> String { (try? run(["status"])) ?? "(no status)" }

    /// Stops and removes everything (bounded; never throws).
    func down() { _ = try? run(["down"], timeout: 60) }
}
