import CZeroMQ

/// A CURVE (Curve25519) long-term key pair in Z85 text (40 characters each).
public struct CurveKeyPair: Sendable, Hashable {
    /// The public key, shared with peers (Z85, 40 characters).
    public let publicKey: String
    /// The secret key, kept private (Z85, 40 characters).
    public let secretKey: String

    /// Creates a pair from Z85 keys, checking that they decode to 32 bytes and match.
    public init(publicKey: String, secretKey: String) throws(ZMQError) {
        guard let derived = try? CurveKeyPair.publicKey(forSecretKey: secretKey), derived == publicKey else {
            throw ZMQError(code: EINVAL, operation: "CurveKeyPair", detail: "public key does not belong to the secret key")
        }
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    private init(unchecked publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// Generates a fresh key pair (`zmq_curve_keypair`). Fails when libzmq lacks CURVE.
    /// The public key never starts with `-` (1 key in 85 would): such a key, given as
    /// `--coordinator-key KEY`, reads as an option to every command-line parser.
    public static func generate() throws(ZMQError) -> CurveKeyPair {
        while true {
            var pub = [CChar](repeating: 0, count: 41)
            var sec = [CChar](repeating: 0, count: 41)
            if zmq_curve_keypair(&pub, &sec) != 0 { throw ZMQError.last("zmq_curve_keypair") }
            let pair = CurveKeyPair(unchecked: string(from: pub), secretKey: string(from: sec))
            if !pair.publicKey.hasPrefix("-") { return pair }
        }
    }

    /// Derives the public key for a Z85 secret key (`zmq_curve_public`).
    public static func publicKey(forSecretKey secretKey: String) throws(ZMQError) -> String {
        guard secretKey.utf8.count == 40 else {
            throw ZMQError(code: EINVAL, operation: "zmq_curve_public", detail: "a Z85 key has 40 characters")
        }
        var pub = [CChar](repeating: 0, count: 41)
        if zmq_curve_public(&pub, secretKey) != 0 { throw ZMQError.last("zmq_curve_public") }
        return string(from: pub)
    }

    private static func string(from chars: [CChar]) -> String {
        String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Z85 encoding of 32-byte CURVE keys.
public enum Z85 {
    /// Encodes `bytes` (length a multiple of 4) as Z85 text.
    public static func encode(_ bytes: [UInt8]) -> String? {
        guard bytes.count % 4 == 0 else { return nil }
        var out = [CChar](repeating: 0, count: bytes.count * 5 / 4 + 1)
        guard zmq_z85_encode(&out, bytes, bytes.count) != nil else { return nil }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Decodes Z85 `text` (length a multiple of 5); nil when invalid.
    public static func decode(_ text: String) -> [UInt8]? {
        let count = text.utf8.count
        guard count % 5 == 0 else { return nil }
        var out = [UInt8](repeating: 0, count: count * 4 / 5)
        guard zmq_z85_decode(&out, text) != nil else { return nil }
        return out
    }
}

/// How a socket secures its connections.
public enum SocketSecurity: Sendable, Hashable {
    /// No encryption or authentication (the NULL mechanism), for a trusted lab network.
    case plain
    /// CURVE server with its key pair; clients must know `keys.publicKey`. Which clients are admitted
    /// is decided by a ``ZAPAuthenticator`` running in the same context (without one, any client that
    /// knows the server key is admitted).
    case curveServer(keys: CurveKeyPair)
    /// CURVE client with its own key pair, connecting to a server with `serverPublicKey`.
    case curveClient(keys: CurveKeyPair, serverPublicKey: String)
}

extension Socket {
    /// Applies `security`. Call before bind/connect.
    public func apply(_ security: SocketSecurity) throws(ZMQError) {
        switch security {
        case .plain:
            break
        case .curveServer(let keys):
            try set(.curveServer, 1)
            try set(.curveSecretKey, keys.secretKey)
        case .curveClient(let keys, let serverPublicKey):
            try set(.curveServerKey, serverPublicKey)
            try set(.curvePublicKey, keys.publicKey)
            try set(.curveSecretKey, keys.secretKey)
        }
    }
}
