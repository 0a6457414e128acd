import CaravanWire
import CaravanCore

/// Steps sent into the pipeline whose results have not arrived yet, keyed by step id. A result
/// may arrive before its waiter is installed (it is kept until then); results of unknown or
/// abandoned steps are dropped.
final class PendingSteps: Sendable {
    private enum Entry {
        case expected
        case waiting(CheckedContinuation<StepOutcome, any Error>)
        case arrived(StepOutcome)
    }

    private let entries = LockedValue<[UInt64: Entry]>([:])

    /// Registers a step about to be sent.
    func expect(_ id: UInt64) {
        entries.withLock { $0[id] = .expected }
    }

    /// Hands a result to its waiter; false when no such step is pending.
    @discardableResult
    func deliver(_ outcome: StepOutcome) -> Bool {
        let waiter: CheckedContinuation<StepOutcome, any Error>? = entries.withLock { table in
            switch table[outcome.stepID] {
            case .expected?:
                table[outcome.stepID] = .arrived(outcome)
                return nil
            case .waiting(let c)?:
                table[outcome.stepID] = nil
                return c
            case .arrived?, nil:
                return nil
            }
        }
        guard let waiter else { return entries.withLock { $0[outcome.stepID] != nil } }
        waiter.resume(returning: outcome)
        return true
    }

    /// Fails the step (e.g. its deadline passed); its result, if it comes later, is dropped.
    func abandon(_ id: UInt64, with error: any Error) {
        let waiter: CheckedContinuation<StepOutcome, any Error>? = entries.withLock { table in
            defer { table[id] = nil }
            if case .waiting(let c)? = table[id] { return c }
            return nil
        }
        waiter?.resume(throwing: error)
    }

    /// Fails every pending step.
    func abandonAll(with error: any Error) {
        let waiters = entries.withLock { table -> [CheckedContinuation<StepOutcome, any Error>] in
            defer { table.removeAll() }
            return table.values.compactMap { if case .waiting(let c) = $0 { return c } else { return nil } }
        }
        for w in waiters { w.resume(throwing: error) }
    }

    /// Waits for the result of `id` (registered with ``expect(_:)``); cancellation abandons it.
    func wait(_ id: UInt64) async throws -> StepOutcome {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<StepOutcome, any Error>) in
                let immediate: Result<StepOutcome, any Error>? = entries.withLock { table in
                    switch table[id] {
                    case .arrived(let o)?:
                        table[id] = nil
                        return .success(o)
                    case .expected?:
                        table[id] = .waiting(c)
                        return nil
                    default:
                        return .failure(PipelineError.abandoned(step: id))
                    }
                }
                if let immediate { c.resume(with: immediate) }
            }
        } onCancel: {
            abandon(id, with: CancellationError())
        }
    }
}
