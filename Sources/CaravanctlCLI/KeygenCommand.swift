import ArgumentParser
import DaemonSetup
import Foundation
import ZeroMQ

/// `caravanctl keygen FILE [--role ROLE --lists DIR]`: a CURVE key pair for a coordinator, worker,
/// client or admin; with a role, its public key is appended to the coordinator's allow-list.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a CURVE key pair: FILE holds the secret key (give it to --key-file), FILE.pub the public key; both mode 0600. Prints the public key.",
        discussion: """
            With --role worker|client|admin the public key is also appended to the coordinator's
            allow-list for that role, DIR/authorized_workers, DIR/authorized_clients or
            DIR/authorized_admins (created when missing; give them to caravan-coordinator
            --authorized-workers/--authorized-clients/--authorized-admins). The coordinator reads
            the lists again when they change. To list a key made elsewhere, append its .pub line.
            """)

    @Argument(help: "Where to write the secret key, e.g. /etc/caravan/worker.key.")
    var file: String

    @Flag(help: "Replace existing files.")
    var force = false

    @Option(help: "Also list the public key for this role: worker, client or admin.")
    var role: String?

    @Option(help: "Directory of the coordinator's allow-lists (with --role).")
    var lists = "/etc/caravan"

    static let listNames = ["worker": "authorized_workers", "client": "authorized_clients", "admin": "authorized_admins"]

    func validate() throws {
        if let role, Self.listNames[role] == nil { throw ValidationError("--role is worker, client or admin") }
    }

    func run() throws {
        let pub = file + ".pub"
        let fm = FileManager.default
        for path in [file, pub] where fm.fileExists(atPath: path) && !force {
            throw ValidationError("\(path) exists (use --force to replace it)")
        }
        let directory = URL(fileURLWithPath: file).deletingLastPathComponent()
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let keys = try CurveKeyPair.generate()
        for (path, text) in [(file, keys.secretKey), (pub, keys.publicKey)] {
            if force { unlink(path) }
            // Created with mode 0600 and O_EXCL: never readable by others, never through a symlink.
            do throws(KeyFile.Failure) {
                try KeyFile.create(path, contents: text + "\n")
            } catch {
                throw ValidationError(error.exists ? "\(path) exists (use --force to replace it)" : error.description)
            }
        }
        if let role, let name = Self.listNames[role] {
            let list = URL(fileURLWithPath: lists).appendingPathComponent(name).path
            try fm.createDirectory(atPath: lists, withIntermediateDirectories: true)
            try Self.append("\(keys.publicKey) \(role) \(URL(fileURLWithPath: file).lastPathComponent)\n", to: list)
            FileHandle.standardError.write(Data("listed as \(role) in \(list)\n".utf8))
        }
        print(keys.publicKey)
    }

    /// Appends `line` to the allow-list `path` (created 0644 when missing: public keys only).
    static func append(_ line: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(line.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw ValidationError("cannot append to \(path): \(String(cString: strerror(errno)))")
        }
    }
}
