import ArgumentParser
import ClusterSupport
import Foundation
import ZeroMQ

/// `caravanctl keygen FILE`: a CURVE key pair for a coordinator, worker or client.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a CURVE key pair: FILE holds the secret key (give it to --key-file), FILE.pub the public key; both mode 0600. Prints the public key.")

    @Argument(help: "Where to write the secret key, e.g. /etc/caravan/worker.key.")
    var file: String

    @Flag(help: "Replace existing files.")
    var force = false

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
        print(keys.publicKey)
    }
}
