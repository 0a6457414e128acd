import ArgumentParser
import DaemonSetup
import Foundation
import ZeroMQ

/// `caravanctl invite`: prints a join token for `caravan-worker --join TOKEN`.
struct Invite: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a join token (caravan1:...) carrying the coordinator's endpoints and public key; a new machine then needs only `caravan-worker --join TOKEN`.",
        discussion: """
            Run it on the coordinator's host. The endpoints and key come from the coordinator's config \
            file (--coordinator-config) or from --control/--clients and --key-file/--coordinator-key; \
            a wildcard or loopback host is replaced by --host (the address workers reach). The token \
            goes to standard output alone, so TOKEN=$(caravanctl invite ...) works.
            """)

    @Option(name: .customLong("coordinator-config"), help: "The coordinator's config file (e.g. /etc/caravan/coordinator.conf): control, clients, key-file and insecure are read from it.")
    var coordinatorConfig: String?

    @Option(help: "The coordinator's control endpoint (default: from --coordinator-config, else tcp://127.0.0.1:7000).")
    var control: String?

    @Option(help: "The coordinator's client endpoint (default: from --coordinator-config, else tcp://127.0.0.1:7100).")
    var clients: String?

    @Option(help: "The host or address workers reach the coordinator at; replaces a wildcard (*, 0.0.0.0) or loopback host in the endpoints.")
    var host: String?

    @Option(name: .customLong("coordinator-key"), help: "The coordinator's public key (default: read from --key-file's .pub, or derived from the secret key file).")
    var coordinatorKey: String?

    @Option(name: .customLong("key-file"), help: "The coordinator's secret key file (default: from --coordinator-config, else ~/.config/caravan/coordinator.key); it is never created here.")
    var keyFile: String?

    @Flag(help: "The coordinator runs with --insecure (plain TCP): the token carries no key.")
    var insecure = false

    func run() throws {
        var settings: [String: String] = [:]
        if let path = coordinatorConfig {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ValidationError("cannot read \(path): \(error.localizedDescription)")
            }
            for entry in try ConfigFile.parse(text, name: path).entries { settings[entry.key] = entry.value }
        }
        let plain = insecure || settings["insecure"] == "true"
        let control = try reachable(self.control ?? settings["control"] ?? "tcp://127.0.0.1:7000", name: "control")
        let clients = try reachable(self.clients ?? settings["clients"] ?? "tcp://127.0.0.1:7100", name: "clients")
        var key: String?
        if !plain {
            key = try coordinatorKey ?? Self.publicKey(
                keyFile: keyFile ?? settings["key-file"]
                    ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".config/caravan/coordinator.key").path)
        }
        let token: JoinToken
        do {
            token = try JoinToken(control: control, clients: clients, coordinatorKey: key)
        } catch {
            throw ValidationError("\(error)")
        }
        print(token.text)
        FileHandle.standardError.write(Data("""
            On the new machine (workers connect to \(control)\(plain ? ", plain TCP" : "")):
              caravan-worker --join \(token.text) --model M.gguf   # without --model it pulls its layers
            \(plain ? "" : "With --authorized-keys, give the worker a --key-file and add its .pub to the coordinator's list.\n")
            """.utf8))
    }

    /// `endpoint` with a wildcard or loopback host replaced by `--host`; a wildcard without
    /// `--host` is refused (no worker elsewhere could use it).
    private func reachable(_ endpoint: String, name: String) throws -> String {
        guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":") else {
            throw ValidationError("the \(name) endpoint '\(endpoint)' is not tcp://HOST:PORT")
        }
        let bound = String(endpoint[endpoint.index(endpoint.startIndex, offsetBy: 6)..<colon])
        let port = endpoint[endpoint.index(after: colon)...]
        guard port != "*", port != "0" else {
            throw ValidationError("the \(name) endpoint \(endpoint) has no fixed port; give the coordinator one (e.g. :7000)")
        }
        let wildcard = ["*", "0.0.0.0", "[::]", "::"].contains(bound)
        let loopback = bound == "localhost" || bound.hasPrefix("127.") || bound == "[::1]"
        if let host, wildcard || loopback {
            return "tcp://\(host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host):\(port)"
        }
        guard !wildcard else {
            throw ValidationError("the \(name) endpoint \(endpoint) binds every interface: give --host (the address workers reach)")
        }
        return endpoint
    }

    /// The public key of the secret key file `path`: derived from the secret, or when that cannot
    /// be read (another user's file) taken from `path.pub` beside it. Never creates a key: an
    /// invitation must name the coordinator's existing one.
    static func publicKey(keyFile path: String) throws -> String {
        var secretError = ""
        do throws(KeyFile.Failure) {
            let secret = try KeyFile.readSecret(path).trimmingCharacters(in: .whitespacesAndNewlines)
            if let key = try? CurveKeyPair.publicKey(forSecretKey: secret) { return key }
            secretError = "\(path) does not hold a Z85 CURVE secret key"
        } catch {
            secretError = error.description
        }
        if let pub = try? String(contentsOfFile: path + ".pub", encoding: .utf8) {
            let key = pub.trimmingCharacters(in: .whitespacesAndNewlines)
            if key.count == 40 { return key }
        }
        throw ValidationError("\(secretError) (give --coordinator-key=KEY, or --key-file the coordinator's key file)")
    }
}
