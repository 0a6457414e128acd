import CaravanWire

/// The worker's side of the control handshake as a pure state machine: it consumes events (the
/// coordinator's messages, load results) and returns directives for the service to carry out. It
/// does no I/O, so every transition is unit-tested without a network.
///
/// Flow: `start` → Hello + Register → `RegisterAck` → idle → `StageAssignment` → loading →
/// loaded → ready (answering `AssignmentReady`) → a newer assignment → loading again.
public struct WorkerSession: Sendable, Equatable {
    /// Where the worker stands.
    public enum State: Sendable, Equatable {
        /// Not started.
        case initial
        /// Hello and Register sent, waiting for the acknowledgement.
        case registering
        /// Registered, no assignment.
        case idle
        /// Loading the layers of an assignment.
        case loading(StageAssignment)
        /// Running an assignment.
        case ready(StageAssignment)
        /// The last assignment failed to load.
        case failed(StageAssignment, reason: String)
        /// The coordinator refused the worker; it stops.
        case refused(reason: String)
    }

    /// What the service must do.
    public enum Directive: Sendable, Equatable {
        /// Send Hello then Register.
        case sendHelloAndRegister
        /// Start sending heartbeats every `intervalMilliseconds`.
        case startHeartbeats(intervalMilliseconds: Int)
        /// Load `assignment` (replacing any stage running now), then report with ``WorkerSession/loaded(epoch:error:)``.
        case load(StageAssignment)
        /// Answer `AssignmentReady` for `epoch` (failed when `error` is set).
        case reportReady(epoch: UInt64, error: String?)
        /// Stop the worker with `reason`.
        case stop(reason: String)
    }

    /// The current state.
    public private(set) var state: State = .initial

    /// A session that has not started.
    public init() {}

    /// Begins registration.
    public mutating func start() -> [Directive] {
        guard state == .initial else { return [] }
        state = .registering
        return [.sendHelloAndRegister]
    }

    /// The coordinator answered the registration.
    /// When the coordinator still runs the plan of the stage this worker kept (`planEpoch` equals
    /// it), the worker goes on serving that stage.
    public mutating func registerAck(accepted: Bool, reason: String, heartbeatIntervalMilliseconds: Int,
                                     planEpoch: UInt64 = 0) -> [Directive] {
        guard state == .registering else { return [] }
        let kept = forgottenAssignment
        forgottenAssignment = nil
        guard accepted else {
            state = .refused(reason: reason)
            return [.stop(reason: "the coordinator refused the registration: \(reason)")]
        }
        let ended = loadEndedWhileRegistering
        loadEndedWhileRegistering = nil
        var directives: [Directive] = [.startHeartbeats(intervalMilliseconds: max(50, heartbeatIntervalMilliseconds))]
        if let kept, planEpoch != 0, kept.planEpoch == planEpoch {
            if let ended {
                // The load ended while the registration was on its way: report it now, or the
                // coordinator waits for a report that nothing would ever send.
                state = ended.error.map { .failed(kept, reason: $0) } ?? .ready(kept)
                directives.append(.reportReady(epoch: kept.planEpoch, error: ended.error))
            } else {
                // A load still running goes on (and reports itself); a loaded stage goes on serving.
                state = forgottenWhileLoading ? .loading(kept) : .ready(kept)
            }
        } else {
            state = .idle
        }
        return directives
    }

    /// The coordinator assigned a stage. Assignments of an epoch older than (or equal to) the one
    /// loaded or loading are ignored; before registration completes they are ignored too.
    public mutating func assigned(_ assignment: StageAssignment) -> [Directive] {
        switch state {
        case .initial, .registering, .refused:
            return []
        case .ready(let current) where assignment.planEpoch == current.planEpoch:
            // Sent again: the coordinator did not get our AssignmentReady.
            return [.reportReady(epoch: current.planEpoch, error: nil)]
        case .loading(let current), .ready(let current), .failed(let current, _):
            guard assignment.planEpoch > current.planEpoch else { return [] }
        case .idle:
            break
        }
        state = .loading(assignment)
        return [.load(assignment)]
    }

    /// Loading the assignment of `epoch` finished (failed when `error` is set). A result for an
    /// epoch that is no longer being loaded is ignored.
    public mutating func loaded(epoch: UInt64, error: String?) -> [Directive] {
        if state == .registering, forgottenWhileLoading, forgottenAssignment?.planEpoch == epoch {
            // Registering again mid-load: keep the outcome for the acknowledgement to report.
            forgottenWhileLoading = false
            loadEndedWhileRegistering = LoadOutcome(error: error)
            return []
        }
        guard case .loading(let assignment) = state, assignment.planEpoch == epoch else { return [] }
        if let error {
            state = .failed(assignment, reason: error)
        } else {
            state = .ready(assignment)
        }
        return [.reportReady(epoch: epoch, error: error)]
    }

    /// The coordinator has been silent too long (it may have restarted and forgotten this worker):
    /// register again. The next assignment is accepted whatever its epoch (a restarted coordinator
    /// counts epochs from 1 again); the stage loaded now keeps running until it is replaced.
    public mutating func coordinatorSilent() -> [Directive] {
        switch state {
        case .initial, .refused:
            return []
        case .registering, .idle:
            state = .registering
        case .loading(let a):
            state = .registering
            forgottenAssignment = a
            forgottenWhileLoading = true
            loadEndedWhileRegistering = nil
        case .ready(let a), .failed(let a, _):
            state = .registering
            forgottenAssignment = a
            forgottenWhileLoading = false
            loadEndedWhileRegistering = nil
        }
        return [.sendHelloAndRegister]
    }

    /// The assignment loaded (or being loaded) before the last re-registration (still running
    /// until replaced).
    public private(set) var forgottenAssignment: StageAssignment?
    /// Whether ``forgottenAssignment`` was still loading.
    private var forgottenWhileLoading = false
    /// How the load of ``forgottenAssignment`` ended, when it ended during the re-registration.
    private var loadEndedWhileRegistering: LoadOutcome?

    /// A finished load's outcome (`error` set when it failed).
    struct LoadOutcome: Sendable, Equatable {
        var error: String?
    }

    /// The assignment whose steps the data plane accepts now (only when ready).
    public var runningAssignment: StageAssignment? {
        if case .ready(let a) = state { return a }
        return nil
    }

    /// The plan epoch to report in heartbeats (0 before any assignment).
    public var planEpoch: UInt64 {
        switch state {
        case .loading(let a), .ready(let a), .failed(let a, _): a.planEpoch
        default: 0
        }
    }
}
