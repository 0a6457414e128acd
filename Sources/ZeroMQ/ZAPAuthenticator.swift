import CZeroMQ
import Foundation
import Synchronization

/// Why a ``ZAPAuthenticator/Resolver`` refused a connection (the ZAP status text).
public struct ZAPRefusal: Error, Sendable, Equatable {
    /// The reason, logged by the coordinator (the peer only sees the handshake fail).
    public let reason: String

    /// A refusal with `reason`.
    public init(_ reason: String) { self.reason = reason }
}

/// One decision of the ``ZAPAuthenticator``, for logging.
public struct ZAPDecision: Sendable, Equatable {
    /// The security mechanism the peer used (`"CURVE"`, `"NULL"`, ...).
    public let mechanism: String
    /// The peer's address as libzmq reports it (e.g. `"127.0.0.1"`).
    public let address: String
    /// The client's CURVE public key in Z85, when the mechanism is CURVE.
    public let clientKey: String?
    /// The ZAP domain of the socket the peer connected to (empty when the socket set none).
    public var domain: String = ""
    /// True when the peer was admitted (status 200).
    public let allowed: Bool
    /// Why (the ZAP status text).
    public let reason: String
}

/// A ZAP (ZeroMQ Authentication Protocol, RFC 27) handler: a REP socket on
/// `inproc://zeromq.zap.01` in a context, answering libzmq's authentication requests on its own
/// thread.
///
/// CURVE clients are admitted (200) when their public key is in the allow-list, which can change at
/// run time, with their Z85 public key as the connection's ZAP User-Id; others are refused (400)
/// and never deliver a message. With a ``Resolver`` instead,
/// the decision depends on the socket's ZAP domain too, and the resolver's answer becomes the
/// connection's ZAP User-Id, which every frame received on it carries (``Message/userID``). NULL-mechanism peers (plain mode)
/// are admitted when `allowNull` is true; libzmq asks about them only for sockets with a ZAP domain.
/// Start it before binding CURVE server sockets: without a handler libzmq admits every CURVE client.
/// Only one authenticator can run per context.
public final class ZAPAuthenticator: Sendable {
    /// The endpoint libzmq sends ZAP requests to.
    public static let endpoint = "inproc://zeromq.zap.01"

    private let shared: Shared

    /// Decides a CURVE connection from the socket's ZAP domain and the client's Z85 public key:
    /// `.success(userID)` admits it with that User-Id, `.failure(reason)` refuses it.
    public typealias Resolver = @Sendable (_ domain: String, _ clientKey: String) -> Result<String, ZAPRefusal>

    /// Starts the handler in `context`, admitting CURVE clients whose Z85 public keys are in
    /// `allowedClientKeys`. `onDecision` is called (on the handler thread) for every request.
    public convenience init(
        context: Context,
        allowedClientKeys: Set<String> = [],
        allowNull: Bool = true,
        onDecision: (@Sendable (ZAPDecision) -> Void)? = nil
    ) throws(ZMQError) {
        var keys = Set<[UInt8]>()
        for key in allowedClientKeys { keys.insert(try Self.decodeKey(key)) }
        try self.init(context: context, keys: keys, resolver: nil, allowNull: allowNull, onDecision: onDecision)
    }

    /// Starts the handler in `context`, asking `resolver` about every CURVE connection (the
    /// allow-list methods have no effect then). `onDecision` is called for every request.
    public convenience init(
        context: Context,
        allowNull: Bool = false,
        resolver: @escaping Resolver,
        onDecision: (@Sendable (ZAPDecision) -> Void)? = nil
    ) throws(ZMQError) {
        try self.init(context: context, keys: [], resolver: resolver, allowNull: allowNull, onDecision: onDecision)
    }

    private init(context: Context, keys: Set<[UInt8]>, resolver: Resolver?, allowNull: Bool,
                 onDecision: (@Sendable (ZAPDecision) -> Void)?) throws(ZMQError) {
        // Everything that can fail happens before `shared` is set, so a failed init runs no deinit.
        let wake = try WakePipe()
        let socket = try Socket(context: context, type: .rep)
        try socket.bind(Self.endpoint)
        shared = Shared(allowed: keys, resolver: resolver, wake: wake)
        let worker = Worker(socket: socket, allowNull: allowNull, onDecision: onDecision, shared: shared)
        let thread = Thread { worker.run() }
        thread.name = "zap-handler"
        thread.start()
    }

    deinit { stop() }

    /// Admits `publicKey` (Z85) from now on.
    public func allow(_ publicKey: String) throws(ZMQError) {
        let key = try Self.decodeKey(publicKey)
        shared.allowed.withLock { _ = $0.insert(key) }
    }

    /// Stops admitting `publicKey` (existing connections stay up).
    public func revoke(_ publicKey: String) throws(ZMQError) {
        let key = try Self.decodeKey(publicKey)
        shared.allowed.withLock { _ = $0.remove(key) }
    }

    /// Replaces the allow-list.
    public func setAllowed(_ publicKeys: Set<String>) throws(ZMQError) {
        var keys = Set<[UInt8]>()
        for key in publicKeys { keys.insert(try Self.decodeKey(key)) }
        shared.allowed.withLock { $0 = keys }
    }

    /// The allow-list as Z85 keys.
    public var allowedKeys: Set<String> {
        Set(shared.allowed.withLock { $0 }.compactMap { Z85.encode($0) })
    }

    /// Stops the handler thread and closes its socket; waits for it (bounded by one poll round).
    /// Idempotent.
    public func stop() {
        guard !shared.stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shared.wake.wake()
        shared.done.wait()
    }

    private static func decodeKey(_ z85: String) throws(ZMQError) -> [UInt8] {
        guard z85.utf8.count == 40, let key = Z85.decode(z85), key.count == 32 else {
            throw ZMQError(code: EINVAL, operation: "ZAPAuthenticator", detail: "'\(z85)' is not a Z85 CURVE public key")
        }
        return key
    }

    /// State shared by the authenticator and its thread.
    private final class Shared: Sendable {
        let allowed: Mutex<Set<[UInt8]>>
        let resolver: Resolver?
        let stopping = Atomic<Bool>(false)
        let wake: WakePipe
        let done = DispatchSemaphore(value: 0)

        init(allowed: Set<[UInt8]>, resolver: Resolver?, wake: WakePipe) {
            self.allowed = Mutex(allowed)
            self.resolver = resolver
            self.wake = wake
        }

        /// The User-Id for `key` connecting to a socket of `domain`, or why it is refused.
        func decide(_ key: [UInt8], domain: String) -> Result<String, ZAPRefusal> {
            if let resolver {
                guard let z85 = Z85.encode(key) else { return .failure(ZAPRefusal("unreadable client key")) }
                return resolver(domain, z85)
            }
            // An admitted key is the connection's User-Id (Z85), so that receivers can name the sender.
            return allowed.withLock { $0.contains(key) } ? .success(Z85.encode(key) ?? "")
                : .failure(ZAPRefusal("unknown client public key"))
        }
    }

    /// The handler thread's state; touched only by that thread.
    private final class Worker: @unchecked Sendable {
        let socket: Socket
        let allowNull: Bool
        let onDecision: (@Sendable (ZAPDecision) -> Void)?
        let shared: Shared

        init(socket: Socket, allowNull: Bool, onDecision: (@Sendable (ZAPDecision) -> Void)?, shared: Shared) {
            self.socket = socket
            self.allowNull = allowNull
            self.onDecision = onDecision
            self.shared = shared
        }

        func run() {
            let auth = shared
            var poller = Poller()
            poller.add(socket, events: .pollIn)
            poller.add(fileDescriptor: auth.wake.readFD, events: .pollIn)
            while !auth.stopping.load(ordering: .acquiring) {
                guard (try? poller.poll(timeoutMilliseconds: 1000)) != nil else { break }
                guard poller.readyEvents(at: 0).contains(.pollIn) else { continue }
                guard let request = try? socket.receiveBytes(dontWait: true) else { continue }
                let reply = answer(request, auth: auth)
                try? socket.send(reply)
            }
            socket.close()
            auth.done.signal()
        }

        func answer(_ frames: [[UInt8]], auth: Shared) -> [[UInt8]] {
            // Request: version, request id, domain, address, routing id, mechanism, credentials...
            func text(_ i: Int) -> String { i < frames.count ? String(decoding: frames[i], as: UTF8.self) : "" }
            let requestID = frames.count > 1 ? frames[1] : []
            let mechanism = text(5)
            var clientKey: String?
            var status = "400"
            var reason: String
            var userID = ""
            if frames.count < 6 || text(0) != "1.0" {
                reason = "malformed ZAP request"
            } else {
                switch mechanism {
                case "CURVE":
                    if frames.count >= 7, frames[6].count == 32 {
                        clientKey = Z85.encode(frames[6])
                        switch auth.decide(frames[6], domain: text(2)) {
                        case .success(let id):
                            status = "200"; reason = "OK"; userID = id
                        case .failure(let refusal):
                            reason = refusal.reason
                        }
                    } else {
                        reason = "CURVE request without a 32-byte client key"
                    }
                case "NULL":
                    if allowNull { status = "200"; reason = "OK" } else { reason = "plain connections refused" }
                default:
                    reason = "mechanism \(mechanism) not supported"
                }
            }
            var decision = ZAPDecision(mechanism: mechanism, address: text(3), clientKey: clientKey,
                                       allowed: status == "200", reason: reason)
            decision.domain = text(2)
            onDecision?(decision)
            // Reply: version, request id, status code, status text, user id, metadata.
            return [Array("1.0".utf8), requestID, Array(status.utf8), Array(reason.utf8), Array(userID.utf8), []]
        }
    }
}
