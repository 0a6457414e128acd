import CaravanCore
import CaravanWire
import Logging
import ZeroMQ

/// Which CURVE clients a worker's data socket admits: a ZAP handler in the worker's ZeroMQ
/// context whose allow-list follows the stage assignments.
///
/// Before the first assignment only the coordinator's key is admitted (the coordinator feeds
/// stage 0); each assignment the worker takes replaces the set with the coordinator's key and the
/// assignment's `dataClientKeys` (the previous stage's worker). ZAP decides when a connection is
/// made: a connection admitted earlier stays up until either side closes it (every stage makes
/// new connections when it loads a new assignment). Refused connections are logged with address,
/// key and reason, at most once per ``RefusalLog/interval`` for the same address and key.
/// Only for CURVE: in plain mode there is no gate.
final class DataSocketGate: Sendable {
    private let authenticator: ZAPAuthenticator
    private let coordinatorPublicKey: String
    private let logger: Logger

    /// Starts the ZAP handler in `context` (before the data socket binds), admitting only
    /// `coordinatorPublicKey`.
    init(context: Context, coordinatorPublicKey: String, logger: Logger) throws(ZMQError) {
        self.coordinatorPublicKey = coordinatorPublicKey
        self.logger = logger
        let refusals = LockedValue(RefusalLog())
        authenticator = try ZAPAuthenticator(context: context, allowedClientKeys: [coordinatorPublicKey],
                                             allowNull: false) { decision in
            guard !decision.allowed else { return }
            let key = decision.clientKey ?? ""
            let earlier = refusals.withLock { $0.record(address: decision.address, key: key, now: .now) }
            guard let earlier else { return }
            var metadata: Logger.Metadata = [
                "address": "\(decision.address)", "key": "\(key)", "reason": "\(decision.reason)",
            ]
            if earlier > 0 { metadata["refused_since_last_logged"] = "\(earlier)" }
            logger.warning("data socket: refused a connection", metadata: metadata)
        }
    }

    /// The keys admitted now (Z85).
    var admitted: Set<String> { authenticator.allowedKeys }

    /// Admits the clients `assignment` names (and the coordinator) from now on, instead of the
    /// previous set.
    func admit(_ assignment: StageAssignment) {
        let keys = Set(assignment.dataClientKeys).union([coordinatorPublicKey])
        do {
            try authenticator.setAllowed(keys)
            logger.info("data socket admits", metadata: [
                "epoch": "\(assignment.planEpoch)", "keys": "\(keys.sorted().joined(separator: " "))",
            ])
        } catch {
            // Keys are checked when the assignment is decoded; keep the previous set if one is not.
            logger.error("data socket: kept the previous allow-list", metadata: ["reason": "\(error)"])
        }
    }

    /// Stops the ZAP handler (before the context terminates).
    func stop() { authenticator.stop() }
}

/// Which refusals are logged: the first of an address and key, then at most one per `interval`
/// (a refused libzmq client retries its handshake every reconnect interval, 0.1 s by default).
struct RefusalLog: Sendable {
    /// Least time between two log lines for the same address and key.
    static let interval: Duration = .seconds(10)
    /// Most address/key pairs remembered (the oldest are forgotten first).
    static let capacity = 256

    private var last: [String: (at: ContinuousClock.Instant, suppressed: Int)] = [:]

    /// Records a refusal; returns nil when it is not to be logged, else how many refusals of the
    /// same address and key went unlogged since the last line.
    mutating func record(address: String, key: String, now: ContinuousClock.Instant) -> Int? {
        let id = address + " " + key
        if let seen = last[id], now - seen.at < Self.interval {
            last[id] = (seen.at, seen.suppressed + 1)
            return nil
        }
        let suppressed = last[id]?.suppressed ?? 0
        if last[id] == nil, last.count >= Self.capacity,
           let oldest = last.min(by: { $0.value.at < $1.value.at })?.key {
            last[oldest] = nil
        }
        last[id] = (now, 0)
        return suppressed
    }
}
