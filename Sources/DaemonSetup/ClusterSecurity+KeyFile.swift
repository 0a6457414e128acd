import CaravanTransport
import Foundation
import ZeroMQ

// A daemon's CURVE key pair, kept in a key file (`--key-file`).
extension ClusterSecurity {
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
