import Foundation
import ZeroMQ

/// How a daemon secures its ZeroMQ connections.
///
/// With CURVE every connection is encrypted and a client must know the server's public key: the
/// coordinator's key is given to workers and clients (`--coordinator-key`), each worker's data-socket
/// key travels in its `Register` and reaches the previous stage in its `StageAssignment`. A worker's
/// data socket admits only the client keys its assignment lists (the coordinator's and the previous
/// stage's worker's; a ZAP allow-list); the coordinator's sockets admit keys by role, from its
/// allow-lists (`Coordinator.AccessList`).
public enum ClusterSecurity: Sendable, Equatable {
    /// Plain TCP (`--insecure`), for trusted networks only.
    case plain
    /// CURVE with this node's key pair.
    case curve(CurveKeyPair)

    /// This node's public key (empty in plain mode).
    public var publicKey: String {
        if case .curve(let keys) = self { return keys.publicKey }
        return ""
    }

    /// Socket security for a socket this node binds (a server).
    public var server: SocketSecurity {
        switch self {
        case .plain: .plain
        case .curve(let keys): .curveServer(keys: keys)
        }
    }

    /// Socket security for connecting to a server with `serverKey` (ignored in plain mode).
    public func client(serverKey: String) -> SocketSecurity {
        switch self {
        case .plain: .plain
        case .curve(let keys): .curveClient(keys: keys, serverPublicKey: serverKey)
        }
    }

    /// Why a key file could not be used.
    public struct KeyFileError: Error, CustomStringConvertible, Sendable {
        /// What went wrong, naming the file.
        public let description: String
    }

    /// Reads the CURVE secret key (Z85, 40 characters) in `path`, or generates a key pair and writes
    /// its secret key there when the file does not exist (created with mode 0600, `O_EXCL`). A
    /// key file that group or others may access is refused (``KeyFile/readSecret(_:)``).
    public static func keyPair(file path: String) throws(KeyFileError) -> CurveKeyPair {
        var entry = stat()
        if lstat(path, &entry) != 0 {
            let keys: CurveKeyPair
            do {
                keys = try CurveKeyPair.generate()
            } catch {
                throw KeyFileError(description: "cannot generate a CURVE key pair: \(error)")
            }
            do throws(KeyFile.Failure) {
                try KeyFile.create(path, contents: keys.secretKey + "\n")
                return keys
            } catch let failure where failure.exists {
                // Another process created it meanwhile: use that one.
            } catch {
                throw KeyFileError(description: error.description)
            }
        }
        let text: String
        do throws(KeyFile.Failure) {
            text = try KeyFile.readSecret(path)
        } catch {
            throw KeyFileError(description: error.description)
        }
        let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            return try CurveKeyPair(publicKey: try CurveKeyPair.publicKey(forSecretKey: secret), secretKey: secret)
        } catch {
            throw KeyFileError(description: "\(path) does not hold a Z85 CURVE secret key: \(error)")
        }
    }
}
