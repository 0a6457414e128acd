import ZeroMQ

/// How a daemon secures its ZeroMQ connections.
///
/// With CURVE every connection is encrypted and a client must know the server's public key: the
/// coordinator's key is given to workers and clients (`--coordinator-key`), each worker's data-socket
/// key travels in its `Register` and reaches the previous stage in its `StageAssignment`. A worker's
/// data socket admits only the client keys its assignment lists (the coordinator's and the previous
/// stage's worker's; a ZAP allow-list); the coordinator's sockets admit keys by role, from its
/// allow-lists (`Coordinator.AccessList`). A daemon reads its key pair from a file with
/// `keyPair(file:)` (`DaemonSetup`).
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
}
