import CaravanCore
import CaravanTransport
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
/// key and reason, within a ``LogBudget`` of one line per 10 s for the same address and key.
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
        // A refused libzmq client retries its handshake every reconnect interval (0.1 s).
        let limited = LogLimiter(logger: logger, budget: LogBudget(burst: 1))
        authenticator = try ZAPAuthenticator(context: context, allowedClientKeys: [coordinatorPublicKey],
                                             allowNull: false) { decision in
            guard !decision.allowed else { return }
            let key = decision.clientKey ?? ""
            limited.warning("data socket: refused a connection", key: "\(decision.address) \(key)", metadata: [
                "address": "\(decision.address)", "key": "\(key)", "reason": "\(decision.reason)",
            ])
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
