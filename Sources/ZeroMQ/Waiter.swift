import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A one-shot rendezvous between a suspended task and the event loop thread.
///
/// Whoever calls ``finish(_:)`` first (the loop with a result, a timeout, or the task's cancellation
/// handler) decides the outcome; later calls are ignored. Finishing before the continuation is
/// installed is allowed: ``install(_:)`` then resumes at once.
final class Waiter<Value: Sendable>: Sendable {
    typealias Continuation = CheckedContinuation<Result<Value, ZMQError>, Never>

    private enum State {
        case idle
        case waiting(Continuation)
        case done(Result<Value, ZMQError>?)
    }

    private let state = Mutex<State>(.idle)

    /// Stores the continuation; returns false (after resuming it) when already finished.
    func install(_ continuation: Continuation) -> Bool {
        let early: Result<Value, ZMQError>?? = state.withLock { state in
            switch state {
            case .idle:
                state = .waiting(continuation)
                return .none
            case .waiting:
                preconditionFailure("waiter installed twice")
            case .done(let result):
                state = .done(nil)
                return .some(result)
            }
        }
        guard let early else { return true }
        continuation.resume(returning: early ?? .failure(ZMQError(code: ECANCELED, operation: "wait")))
        return false
    }

    /// Delivers `result`; returns false when the waiter had already finished (the result is unused).
    @discardableResult
    func finish(_ result: Result<Value, ZMQError>) -> Bool {
        let action: (Continuation?, Bool) = state.withLock { state in
            switch state {
            case .idle:
                state = .done(result)
                return (nil, true)
            case .waiting(let continuation):
                state = .done(nil)
                return (continuation, true)
            case .done:
                return (nil, false)
            }
        }
        action.0?.resume(returning: result)
        return action.1
    }

    /// True once finished (delivered, failed, timed out or cancelled).
    var isDone: Bool {
        state.withLock { if case .done = $0 { true } else { false } }
    }
}
