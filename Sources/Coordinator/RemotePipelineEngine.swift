import CaravanCore
import CaravanTransport
import CaravanWire
import Inference
import Llama
import Logging

/// Why a remote forward step failed.
public enum PipelineError: Error, Equatable, CustomStringConvertible, Sendable {
    /// No result came back before the deadline.
    case timeout(step: UInt64, seconds: Double)
    /// A stage reported an error.
    case stageFailed(step: UInt64, message: String)
    /// The step could not be sent to the first stage.
    case sendFailed(String)
    /// The result does not match the step.
    case badResult(step: UInt64, reason: String)
    /// The step was abandoned (shutdown, or a result already consumed).
    case abandoned(step: UInt64)

    public var description: String {
        switch self {
        case let .timeout(s, secs): "step \(s): no result within \(secs) s"
        case let .stageFailed(s, m): "step \(s) failed: \(m)"
        case let .sendFailed(m): "could not send the step to the first stage: \(m)"
        case let .badResult(s, r): "step \(s): bad result: \(r)"
        case let .abandoned(s): "step \(s) was abandoned"
        }
    }
}

/// A ``ForwardEngine`` whose layers run on a pipeline of workers: a step goes to the first stage's
/// data socket as token rows, travels through every stage, and the last stage's result comes back
/// on the coordinator's result socket (fed in with ``deliver(_:)``): the tokens it sampled for the
/// rows' sampling requests, or logits when some row had none. Several steps may be in flight
/// at once (one per lane), each matched to its result by step id and plan epoch, each with a
/// deadline (``StepDeadline``: a multiple of recent step times, at most `deadline`).
/// ``release(_:)`` asks every stage to drop the sequence's cache.
public final class RemotePipelineEngine: ForwardEngine, Sendable {
    /// Rows of the model's output matrix.
    public let vocabularySize: Int
    /// Positions per sequence the stages' caches hold.
    public let contextLimit: Int
    /// The plan epoch steps run under.
    public let planEpoch: UInt64
    private let firstStage: any Transport
    private let codec: WireCodec
    private let deadline: Duration
    private let releaser: @Sendable ([UInt64]) async -> Void
    private let pending = PendingSteps()
    private let nextStep = LockedValue<UInt64>(1)
    private let timing: LockedValue<StepDeadline>
    private let label: String
    /// The replay of the sequences that continue from the previous plan (nil: none).
    private let replay: ReplayLedger?

    /// An engine sending steps of `planEpoch` through `firstStage` (a one-peer transport connected
    /// to the first worker's data endpoint); `releaser` sends `ReleaseSequences` to every worker.
    public init(firstStage: any Transport, planEpoch: UInt64, vocabularySize: Int, contextLimit: Int, codec: WireCodec,
                deadline: Duration = .seconds(30), timing: LockedValue<StepDeadline>? = nil, label: String = "pipeline",
                replay: ReplayLedger? = nil, releaser: @escaping @Sendable ([UInt64]) async -> Void) {
        self.replay = replay
        self.firstStage = firstStage
        self.planEpoch = planEpoch
        self.vocabularySize = vocabularySize
        self.contextLimit = contextLimit
        self.codec = codec
        self.deadline = deadline
        // Shared across the epochs of one coordinator when given: the first steps of a new
        // pipeline are timed by what the previous ones measured.
        self.timing = timing ?? LockedValue(StepDeadline(maximum: Self.seconds(deadline)))
        self.label = label
        self.releaser = releaser
    }

    /// Hands a result from the result socket to the step waiting for it. Returns false (the caller
    /// logs and drops it) for results of another epoch or of no pending step.
    @discardableResult
    public func deliver(_ outcome: StepOutcome) -> Bool {
        guard outcome.planEpoch == planEpoch else { return false }
        return pending.deliver(outcome)
    }

    /// Fails every step in flight (shutdown or lost pipeline).
    public func failAll(_ error: any Error) { pending.abandonAll(with: error) }

    /// Sends `batch` (token rows) to the first stage and waits for the last stage's sampled tokens
    /// or logits, at most the deadline; throws ``PipelineError``.
    public func forward(_ batch: StageBatch) async throws -> StageOutput {
        let id = nextStep.withLock { value -> UInt64 in
            defer { value += 1 }
            return value
        }
        let step = ActivationStep(tokens: batch, pipelineLabel: label, planEpoch: planEpoch, stepID: id)
        let frames = try codec.encode(step)
        pending.expect(id)
        let frameBytes = frames.reduce(0) { $0 + $1.count }
        do {
            try await firstStage.send(frames, timeout: deadline)
            CoordinatorMetrics.bytesToFirstStage.increment(by: frameBytes)
        } catch {
            pending.abandon(id, with: PipelineError.sendFailed("\(error)"))
            throw PipelineError.sendFailed("\(error)")
        }
        let rows = batch.entries.count
        let inFlight = StepDeadline.InFlight(epoch: planEpoch, step: id)
        let deadline = Duration.milliseconds(Int(timing.withLock { $0.start(inFlight, rows: rows) } * 1000))
        defer { timing.withLock { $0.end(inFlight) } }
        let sent = ContinuousClock.now
        let outcome: StepOutcome = try await withThrowingTaskGroup(of: StepOutcome?.self) { group in
            group.addTask { try await self.pending.wait(id) }
            group.addTask {
                try await Task.sleep(for: deadline)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let outcome = first else {
                pending.abandon(id, with: PipelineError.timeout(step: id, seconds: Self.seconds(deadline)))
                throw PipelineError.timeout(step: id, seconds: Self.seconds(deadline))
            }
            return outcome
        }
        if let message = outcome.error { throw PipelineError.stageFailed(step: id, message: message) }
        let took = Self.seconds(ContinuousClock.now - sent)
        CoordinatorMetrics.pipelineStep.recordSeconds(took)
        timing.withLock { $0.record(rows: rows, seconds: took) }
        replay?.record(step: id, batch: batch, recomputed: outcome.replayedLayerPositions)
        do {
            return try StageOutput(outcome: outcome, batch: batch, vocabulary: vocabularySize)
        } catch {
            throw PipelineError.badResult(step: id, reason: error.description)
        }
    }

    /// Asks every stage to drop `sequence`'s KV cache.
    public func release(_ sequence: SequenceID) async {
        await releaser([sequence.rawValue])
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
