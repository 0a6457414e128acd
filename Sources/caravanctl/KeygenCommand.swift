import ArgumentParser
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
            try? fm.removeItem(atPath: path)
            guard fm.createFile(atPath: path, contents: Data((text + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                throw ValidationError("cannot write \(path)")
            }
            try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        }
        print(keys.publicKey)
    }
}
