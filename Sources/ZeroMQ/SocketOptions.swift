import CZeroMQ

/// An `int`-valued socket option.
public struct IntOption: Sendable {
    let raw: Int32
    let name: String
    init(_ raw: Int32, _ name: String) { self.raw = raw; self.name = name }

    /// `ZMQ_LINGER`: milliseconds pending messages are kept after close (-1 forever, 0 drop).
    public static let linger = IntOption(ZMQ_LINGER, "ZMQ_LINGER")
    /// `ZMQ_SNDHWM`: high-water mark for queued outgoing messages per peer.
    public static let sendHighWaterMark = IntOption(ZMQ_SNDHWM, "ZMQ_SNDHWM")
    /// `ZMQ_RCVHWM`: high-water mark for queued incoming messages per peer.
    public static let receiveHighWaterMark = IntOption(ZMQ_RCVHWM, "ZMQ_RCVHWM")
    /// `ZMQ_SNDTIMEO`: milliseconds a blocking send waits before `EAGAIN` (-1 forever).
    public static let sendTimeout = IntOption(ZMQ_SNDTIMEO, "ZMQ_SNDTIMEO")
    /// `ZMQ_RCVTIMEO`: milliseconds a blocking receive waits before `EAGAIN` (-1 forever).
    public static let receiveTimeout = IntOption(ZMQ_RCVTIMEO, "ZMQ_RCVTIMEO")
    /// `ZMQ_RECONNECT_IVL`: milliseconds between reconnection attempts (-1 disables).
    public static let reconnectInterval = IntOption(ZMQ_RECONNECT_IVL, "ZMQ_RECONNECT_IVL")
    /// `ZMQ_RECONNECT_IVL_MAX`: upper bound for exponential reconnect back-off (0: no back-off).
    public static let reconnectIntervalMax = IntOption(ZMQ_RECONNECT_IVL_MAX, "ZMQ_RECONNECT_IVL_MAX")
    /// `ZMQ_ROUTER_MANDATORY` (set-only, 0/1): a ROUTER fails with `EHOSTUNREACH` instead of
    /// silently dropping messages for unknown identities.
    public static let routerMandatory = IntOption(ZMQ_ROUTER_MANDATORY, "ZMQ_ROUTER_MANDATORY")
    /// `ZMQ_ROUTER_HANDOVER` (set-only, 0/1): a ROUTER hands an identity over to a new connection
    /// that presents it (a peer that reconnected) instead of refusing the newcomer.
    public static let routerHandover = IntOption(ZMQ_ROUTER_HANDOVER, "ZMQ_ROUTER_HANDOVER")
    /// `ZMQ_HEARTBEAT_IVL`: milliseconds between ZMTP PING heartbeats (0 off).
    public static let heartbeatInterval = IntOption(ZMQ_HEARTBEAT_IVL, "ZMQ_HEARTBEAT_IVL")
    /// `ZMQ_HEARTBEAT_TIMEOUT`: milliseconds without traffic after a PING before the connection is
    /// closed.
    public static let heartbeatTimeout = IntOption(ZMQ_HEARTBEAT_TIMEOUT, "ZMQ_HEARTBEAT_TIMEOUT")
    /// `ZMQ_HEARTBEAT_TTL`: milliseconds the remote peer should wait for traffic (sent in PINGs,
    /// rounded to deciseconds).
    public static let heartbeatTTL = IntOption(ZMQ_HEARTBEAT_TTL, "ZMQ_HEARTBEAT_TTL")
    /// `ZMQ_HANDSHAKE_IVL`: milliseconds allowed for the ZMTP (and CURVE) handshake.
    public static let handshakeInterval = IntOption(ZMQ_HANDSHAKE_IVL, "ZMQ_HANDSHAKE_IVL")
    /// `ZMQ_CONNECT_TIMEOUT`: milliseconds a TCP connect may take before it is abandoned (and
    /// retried after the reconnect interval); 0 = the kernel's own SYN back-off (minutes).
    public static let connectTimeout = IntOption(ZMQ_CONNECT_TIMEOUT, "ZMQ_CONNECT_TIMEOUT")
    /// `ZMQ_TCP_MAXRT` (`TCP_USER_TIMEOUT` on Linux): milliseconds sent data may stay unacknowledged
    /// before the connection is dropped; 0 = the kernel default (about 15 minutes).
    public static let tcpMaxRetransmitTimeout = IntOption(ZMQ_TCP_MAXRT, "ZMQ_TCP_MAXRT")
    /// `ZMQ_IMMEDIATE` (0/1): queue messages only to completed connections.
    public static let immediate = IntOption(ZMQ_IMMEDIATE, "ZMQ_IMMEDIATE")
    /// `ZMQ_CURVE_SERVER` (0/1): act as CURVE server (needs ``BytesOption/curveSecretKey``).
    public static let curveServer = IntOption(ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER")
    /// `ZMQ_IPV6` (0/1): enable IPv6 on the socket.
    public static let ipv6 = IntOption(ZMQ_IPV6, "ZMQ_IPV6")
}

/// An `int64`-valued socket option.
public struct Int64Option: Sendable {
    let raw: Int32
    let name: String
    init(_ raw: Int32, _ name: String) { self.raw = raw; self.name = name }

    /// `ZMQ_MAXMSGSIZE`: largest accepted inbound frame in bytes (-1 unlimited). A peer sending a
    /// bigger frame is disconnected by libzmq and the frame is never delivered.
    public static let maxMessageSize = Int64Option(ZMQ_MAXMSGSIZE, "ZMQ_MAXMSGSIZE")
}

/// A binary/string-valued socket option.
public struct BytesOption: Sendable {
    let raw: Int32
    let name: String
    init(_ raw: Int32, _ name: String) { self.raw = raw; self.name = name }

    /// `ZMQ_ROUTING_ID`: identity this socket presents to ROUTER peers (1-255 bytes, not starting
    /// with a zero byte).
    public static let routingID = BytesOption(ZMQ_ROUTING_ID, "ZMQ_ROUTING_ID")
    /// `ZMQ_CURVE_SECRETKEY`: own long-term secret key (Z85 text or 32 bytes).
    public static let curveSecretKey = BytesOption(ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY")
    /// `ZMQ_CURVE_PUBLICKEY`: own long-term public key (client side).
    public static let curvePublicKey = BytesOption(ZMQ_CURVE_PUBLICKEY, "ZMQ_CURVE_PUBLICKEY")
    /// `ZMQ_CURVE_SERVERKEY`: the server's public key (client side; makes the socket a CURVE client).
    public static let curveServerKey = BytesOption(ZMQ_CURVE_SERVERKEY, "ZMQ_CURVE_SERVERKEY")
    /// `ZMQ_ZAP_DOMAIN`: ZAP domain; with the NULL mechanism, ZAP is consulted only when set.
    public static let zapDomain = BytesOption(ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN")
}

extension Socket {
    /// Sets an `int` option.
    public func set(_ option: IntOption, _ value: Int32) throws(ZMQError) {
        var v = value
        if zmq_setsockopt(handle, option.raw, &v, MemoryLayout<Int32>.size) != 0 {
            throw ZMQError.last("zmq_setsockopt(\(option.name), \(value))")
        }
    }

    /// Reads an `int` option.
    public func get(_ option: IntOption) throws(ZMQError) -> Int32 {
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if zmq_getsockopt(handle, option.raw, &v, &size) != 0 { throw ZMQError.last("zmq_getsockopt(\(option.name))") }
        return v
    }

    /// Sets an `int64` option.
    public func set(_ option: Int64Option, _ value: Int64) throws(ZMQError) {
        var v = value
        if zmq_setsockopt(handle, option.raw, &v, MemoryLayout<Int64>.size) != 0 {
            throw ZMQError.last("zmq_setsockopt(\(option.name), \(value))")
        }
    }

    /// Reads an `int64` option.
    public func get(_ option: Int64Option) throws(ZMQError) -> Int64 {
        var v: Int64 = 0
        var size = MemoryLayout<Int64>.size
        if zmq_getsockopt(handle, option.raw, &v, &size) != 0 { throw ZMQError.last("zmq_getsockopt(\(option.name))") }
        return v
    }

    /// Sets a binary option.
    public func set(_ option: BytesOption, _ value: [UInt8]) throws(ZMQError) {
        let rc = value.withUnsafeBytes { zmq_setsockopt(handle, option.raw, $0.baseAddress, $0.count) }
        if rc != 0 { throw ZMQError.last("zmq_setsockopt(\(option.name), \(value.count) bytes)") }
    }

    /// Sets a text option (UTF-8, no terminating NUL), e.g. a Z85 key.
    public func set(_ option: BytesOption, _ value: String) throws(ZMQError) {
        try set(option, Array(value.utf8))
    }

    /// Reads a binary option (at most 256 bytes).
    public func get(_ option: BytesOption) throws(ZMQError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 256)
        var size = buffer.count
        let rc = buffer.withUnsafeMutableBytes { zmq_getsockopt(handle, option.raw, $0.baseAddress, &size) }
        if rc != 0 { throw ZMQError.last("zmq_getsockopt(\(option.name))") }
        return Array(buffer.prefix(size))
    }

    func getString(_ raw: Int32, name: String) throws(ZMQError) -> String {
        var buffer = [UInt8](repeating: 0, count: 1024)
        var size = buffer.count
        let rc = buffer.withUnsafeMutableBytes { zmq_getsockopt(handle, raw, $0.baseAddress, &size) }
        if rc != 0 { throw ZMQError.last("zmq_getsockopt(\(name))") }
        let bytes = buffer.prefix(size).prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}
