import CaravanCore
import CaravanTransport
import CaravanWire
import GGUF
import Llama
import Logging
import ZeroMQ

/// Why an assignment could not be loaded.
public struct StageLoadError: Error, CustomStringConvertible, Sendable {
    /// The reason, reported to the coordinator in `AssignmentReady.error`.
    public let description: String
}

/// The data plane of a worker: the loaded stage and the transports to its next hop and to the
/// coordinator's result endpoint (made by a ``TransportDialer``: ZeroMQ in the daemon, in memory in
/// tests). Steps are executed one at a time in arrival order (the stage is
/// not thread-safe); a bad step is logged and dropped, a failed forward is reported as a
/// `StepResult` error, and nothing a peer sends stops the runtime. Whoever sends it, a step runs
/// only within the assignment's limits (``StepLimits``: rows per step, KV room), so the stage's
/// memory stays within what the plan sized.
public actor StageRuntime {
    struct Installed {
        let assignment: StageAssignment
        let stage: LlamaStage
        let next: NextHop
        let results: any Transport
    }

    let dialer: any TransportDialer
    let codec: WireCodec
    private let threads: Int
    private let coordinatorPublicKey: String
    private let sendTimeout: Duration
    let logger: Logger
    /// Lines a peer can cause, within a budget (``LogLimiter``).
    let limited: LogLimiter
    /// Times steps (ContinuousClock in the daemon; tests may dilate it).
    private let clock: any Clock<Duration>
    var installed: Installed?
    /// As a holder: KV rows of the layers this worker keeps standby copies of, as their owner
    /// streamed them (for the plan it runs).
    var mirrorStore: KVMirror?
    /// As an owner: the holders it streams KV rows to.
    var mirrorLinks: MirrorLinks?
    /// For the sequences the last assignment named as continuing: the positions the stage holds
    /// in every layer (reported in `AssignmentReady.held`).
    public private(set) var held: (epoch: UInt64, positions: [SequenceID: Int]) = (0, [:])
    private var pool: ComputeThreadPool?
    /// Step statistics since the stage was loaded, readable without waiting for a running step
    /// (heartbeats must never wait for compute).
    public nonisolated let statistics = LockedValue(StepStatistics())
    /// Steps executed since the stage was loaded (for logs and tests).
    public var stepsRun: Int { statistics.withLock { $0.steps } }
    /// Bytes the stage's KV caches hold now (0 with no stage).
    public var kvCacheBytes: Int { installed?.stage.cacheBytes ?? 0 }
    /// How long a step that finds no KV room waits for room to be released: a job's
    /// `ReleaseSequences` comes on the control link and may arrive just after the step that
    /// reuses its room, which the coordinator sends on the data link once the job ended.
    private let releaseGrace: Duration
    /// The first wait before a holder that stopped taking mirrored rows is tried again.
    let mirrorRetry: Duration
    /// How often the rows steps appended go to the holders of mirrored layers (see
    /// ``mirrorStep(_:stage:epoch:)``).
    let mirrorFlushInterval: Duration

    /// A runtime connecting to its next hop and the result endpoint through `dialer`; the
    /// coordinator proves itself with `coordinatorPublicKey` (CURVE; "" in plain mode). Step
    /// times (reported in heartbeats, read by the coordinator's balance checks) are measured on
    /// `clock`. A step short of KV room waits up to `releaseGrace` for releases. A holder that
    /// stops taking mirrored KV rows is tried again after `mirrorRetry`, then after doubling waits;
    /// mirrored rows go out at most every `mirrorFlushInterval`.
    public init(dialer: any TransportDialer, codec: WireCodec, threads: Int,
                coordinatorPublicKey: String = "", sendTimeout: Duration, logger: Logger,
                clock: any Clock<Duration> = ContinuousClock(), releaseGrace: Duration = .milliseconds(500),
                mirrorRetry: Duration = .seconds(1), mirrorFlushInterval: Duration = .milliseconds(100)) {
        self.releaseGrace = releaseGrace
        self.mirrorRetry = mirrorRetry
        self.mirrorFlushInterval = mirrorFlushInterval
        self.dialer = dialer
        self.clock = clock
        self.codec = codec
        self.threads = threads
        self.coordinatorPublicKey = coordinatorPublicKey
        self.sendTimeout = sendTimeout
        self.logger = logger
        self.limited = LogLimiter(logger: logger)
    }

    /// Loads the layers of `assignment` from `path` (a file whose SHA-256 matched) and connects to
    /// the next hop, replacing the stage running before. Of the old stage's sequences, those the
    /// assignment names as continuing keep the KV of the layers both stages run and the outputs
    /// sent on (see ``LlamaStage/continueSequences(_:from:)``); the others are forgotten. Returns
    /// the bytes the stage uses: weights and the most its kept outputs take.
    public func load(_ assignment: StageAssignment, path: String) async throws(StageLoadError) -> Int {
        let stage: LlamaStage
        let runner = pool ?? ComputeThreadPool(threads: threads)
        pool = runner
        if let old = installed, old.assignment.modelSHA256 == assignment.modelSHA256, old.assignment.layers == assignment.layers,
           old.assignment.maxContextTokens == assignment.maxContextTokens {
            // Same layers in a new plan: keep the weights (and what continuing sequences kept).
            stage = old.stage
        } else {
            do {
                let file = try GGUFFile(path: path)
                // Blocks this worker already runs are taken from the stage it replaces (same
                // model), so a re-plan loads only the blocks that are new to it.
                let kept = installed.flatMap { $0.assignment.modelSHA256 == assignment.modelSHA256 ? $0.stage : nil }
                stage = try LlamaStage(file: file, layers: assignment.layers, contextLimit: assignment.maxContextTokens,
                                       runner: runner, keeping: kept)
            } catch {
                throw StageLoadError(description: "cannot load layers \(assignment.layers) of \(path): \(error)")
            }
        }
        guard stage.configuration.layerCount == assignment.modelLayerCount else {
            throw StageLoadError(description: "the model has \(stage.configuration.layerCount) layers, the assignment says \(assignment.modelLayerCount)")
        }
        let next: NextHop
        let results: any Transport
        do {
            // The last stage sends to the coordinator's result endpoint: connected now, and shared
            // with failure reports. A next stage is connected at the first step sent to it (see
            // NextHop).
            if assignment.resultAddress == assignment.nextHop {
                results = try dialer.dial(assignment.nextHop, serverKey: assignment.nextHopPublicKey)
                next = NextHop(dialer: dialer, endpoint: assignment.nextHop, serverKey: assignment.nextHopPublicKey,
                               connected: results)
            } else {
                next = NextHop(dialer: dialer, endpoint: assignment.nextHop, serverKey: assignment.nextHopPublicKey,
                               connected: nil)
                results = try dialer.dial(assignment.resultAddress, serverKey: coordinatorPublicKey)
            }
        } catch {
            throw StageLoadError(description: "cannot connect to \(assignment.nextHop): \(error)")
        }
        if let old = installed {
            await old.next.close()
            await old.results.close()
        }
        stage.outputPrecision = assignment.activationDType == .f16 ? .f16 : .f32
        stage.keptOutputLimit = assignment.maxContextTokens * assignment.maxBatchSequences
        let previous = installed.flatMap { $0.assignment.modelSHA256 == assignment.modelSHA256 ? $0.stage : nil }
        // Rows mirrored here under the plan being replaced fill the layers taken over; then they
        // (and the holders of that plan) are done with.
        let mirror = mirrorStore.flatMap { m in installed.map { $0.assignment.planEpoch == m.epoch } ?? false ? m : nil }
        let continued = stage.continueSequences(assignment.continuing, from: previous, mirror: mirror)
        mirrorStore = nil
        await closeMirrorLinks()
        held = (assignment.planEpoch, Dictionary(continued.map { ($0.sequence, $0.heldPositions) }, uniquingKeysWith: min))
        logContinued(continued, assignment: assignment)
        installed = Installed(assignment: assignment, stage: stage, next: next, results: results)
        statistics.withLock { $0 = StepStatistics() }
        WorkerMetrics.weightBytes.record(stage.weightBytes)
        WorkerMetrics.layers.record(assignment.layers.count)
        WorkerMetrics.kvCacheBytes.record(stage.cacheBytes)
        WorkerMetrics.kvCacheBudgetBytes.record(stage.cacheBudgetBytes(sequences: assignment.maxBatchSequences))
        logger.info("stage loaded", metadata: [
            "epoch": "\(assignment.planEpoch)", "layers": "\(assignment.layers)",
            "stage": "\(assignment.stageIndex + 1)/\(assignment.stageCount)", "next": "\(assignment.nextHop)",
            "weight_bytes": "\(stage.weightBytes)", "kept_output_budget_bytes": "\(stage.keptOutputBudgetBytes)",
        ])
        return stage.weightBytes + stage.keptOutputBudgetBytes
    }

    /// Logs what the stage kept of each continuing sequence, and what it will recompute.
    private func logContinued(_ continued: [ContinuedSequence], assignment: StageAssignment) {
        guard !continued.isEmpty else { return }
        let recompute = continued.reduce(0) { $0 + $1.recompute }
        let full = continued.reduce(0) { $0 + $1.committed * assignment.layers.count }
        logger.info("continuing sequences", metadata: [
            "epoch": "\(assignment.planEpoch)", "layers": "\(assignment.layers)", "sequences": "\(continued.count)",
            "kept": "\(continued.count { $0.keptLayers != nil })", "recompute_layer_positions": "\(recompute)",
            "full_layer_positions": "\(full)", "mirrored": "\(continued.count { $0.mirroredLayers != nil })",
            "held_positions": "\(continued.reduce(0) { $0 + $1.heldPositions })",
        ])
        for c in continued where c.fallback != nil || c.cutPositions > 0 || c.mirroredLayers != nil {
            logger.info("continuing sequence: \(c)", metadata: ["epoch": "\(assignment.planEpoch)"])
        }
    }

    /// Frees the KV caches of `sequences`, and tells the holders of mirrored rows to drop them.
    public func release(_ sequences: [UInt64], epoch: UInt64) async {
        guard let installed, installed.assignment.planEpoch == epoch else { return }
        for id in sequences { installed.stage.removeSequence(SequenceID(id)) }
        WorkerMetrics.kvCacheBytes.record(installed.stage.cacheBytes)
        await releaseMirrored(sequences, epoch: epoch)
    }

    /// Handles one received data message (frames after the routing id) from `sender` (the key
    /// its link proved, for logs; nil when unknown).
    public func handle(frames: [Message], from sender: String? = nil) async {
        WorkerMetrics.bytesReceived.increment(by: frames.reduce(0) { $0 + $1.count })
        let step: ActivationStep
        do {
            switch try codec.decode(frames) {
            case .activation(let s, _):
                step = s
            case .kvRows(let rows, _):
                keepMirrored(rows, from: sender)
                return
            case .message(.releaseSequences(let m), _):
                releaseMirror(m.sequenceIds, epoch: m.planEpoch)
                return
            default:
                limited.warning("data socket: dropped a message that is not an activation", key: sender ?? "")
                return
            }
        } catch {
            limited.warning("data socket: dropped a bad frame", key: sender ?? "", metadata: ["reason": "\(error)", "frames": "\(frames.count)"])
            return
        }
        guard let installed else {
            limited.warning("data socket: dropped a step: no stage loaded", key: sender ?? "", metadata: ["step": "\(step.stepID)"])
            return
        }
        let assignment = installed.assignment
        guard step.planEpoch == assignment.planEpoch else {
            await report(step.failure("stage \(assignment.stageIndex) runs plan epoch \(assignment.planEpoch), step has \(step.planEpoch)"), to: installed)
            return
        }
        let batch: StageBatch
        do {
            batch = try StageBatch(step: step, embedsTokens: assignment.embedsTokens,
                                   hiddenWidth: installed.stage.configuration.embeddingLength)
        } catch {
            await report(step.failure("stage \(assignment.stageIndex): \(error)"), to: installed)
            return
        }
        if let refusal = await refusal(batch, installed: installed) {
            guard self.installed?.assignment == assignment else {
                limited.warning("data socket: dropped a step: the stage was replaced while it waited for KV room", key: sender ?? "",
                                metadata: ["step": "\(step.stepID)"])
                return
            }
            let peer = sender ?? "unknown"
            limited.warning("data socket: refused a step beyond the plan's limits", key: peer, metadata: [
                "step": "\(step.stepID)", "sender": "\(peer)", "reason": "\(refusal)",
            ])
            await report(step.failure("stage \(assignment.stageIndex): \(refusal)"), to: installed, log: false)
            return
        }
        var output: StageOutput
        let elapsedSinceStart = Self.stopwatch(clock)
        let replayedBefore = installed.stage.replayedLayerPositions
        do {
            output = try installed.stage.forward(batch)
        } catch {
            await report(step.failure("stage \(assignment.stageIndex) (layers \(assignment.layers)): \(error)"), to: installed)
            return
        }
        // The last stage samples itself when every row asks it to: a token id goes back instead of
        // a vocabulary-wide logits row. (Counted in the step's compute time below.)
        do {
            output = try output.sampledOnStage(batch: batch)
        } catch {
            await report(step.failure("stage \(assignment.stageIndex): \(error)"), to: installed)
            return
        }
        let elapsed = elapsedSinceStart()
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        let replayed = UInt64(installed.stage.replayedLayerPositions - replayedBefore)
        statistics.withLock {
            $0.record(milliseconds: ms, rows: batch.entries.count)
            $0.replayedLayerPositions += replayed
        }
        if replayed > 0 { WorkerMetrics.replayedLayerPositions.increment(by: Int(replayed)) }
        // Carried on with the step: the last stage reports the pipeline's sum to the coordinator.
        let replayedSoFar = step.replayedLayerPositions > UInt64.max - replayed ? UInt64.max : step.replayedLayerPositions + replayed
        WorkerMetrics.stepTime.record(duration: elapsed)
        WorkerMetrics.steps.increment()
        WorkerMetrics.rows.increment(by: batch.entries.count)
        WorkerMetrics.kvCacheBytes.record(installed.stage.cacheBytes)
        do {
            let frames: [Message]
            switch output {
            case let .hidden(values, rows, width):
                var next = try step.forwarding(hidden: values, rows: rows, width: width, dtype: assignment.activationDType)
                next.replayedLayerPositions = replayedSoFar
                frames = try codec.encode(next)
            case let .logits(values, entryIndices, vocabulary):
                var result = try step.outcome(logits: values, entryIndices: entryIndices, vocabulary: vocabulary, dtype: .f32)
                result.replayedLayerPositions = replayedSoFar
                frames = try codec.encode(result)
            case let .sampled(rows, entryIndices):
                var result = step.outcome(sampled: rows, entryIndices: entryIndices)
                result.replayedLayerPositions = replayedSoFar
                frames = try codec.encode(result)
            }
            try await installed.next.send(frames, timeout: sendTimeout)
            let sent = frames.reduce(0) { $0 + $1.count }
            if case .hidden = output { WorkerMetrics.bytesToNextStage.increment(by: sent) } else { WorkerMetrics.bytesToCoordinator.increment(by: sent) }
        } catch {
            limited.error("could not send the output of a step", metadata: ["step": "\(step.stepID)", "reason": "\(error)"])
            await report(step.failure("stage \(assignment.stageIndex): could not send its output: \(error)"), to: installed)
            return
        }
        // After the output left: the rows this step appended, to the holders of mirrored layers.
        await mirrorStep(batch, stage: installed.stage, epoch: assignment.planEpoch)
    }

    /// Why `batch` may not run under the installed assignment (``StepLimits``), or nil. A step
    /// short of KV room waits up to `releaseGrace` for releases (the actor serves them
    /// meanwhile) and is refused if room does not come, or if the stage is replaced meanwhile.
    private func refusal(_ batch: StageBatch, installed: Installed) async -> StepRefusal? {
        let limits = StepLimits(assignment: installed.assignment, contextLimit: installed.stage.contextLimit)
        let deadline = ContinuousClock.now + releaseGrace
        while true {
            guard self.installed?.assignment == installed.assignment else { return .stageReplaced }
            guard let refusal = limits.refusal(batch, on: installed.stage) else { return nil }
            guard case .noKVRoom = refusal, ContinuousClock.now < deadline else { return refusal }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    private func report(_ outcome: StepOutcome, to installed: Installed, log: Bool = true) async {
        WorkerMetrics.stepFailures.increment()
        if log { limited.warning("step failed", metadata: ["step": "\(outcome.stepID)", "reason": "\(outcome.error ?? "")"]) }
        do {
            try await installed.results.send(try codec.encode(outcome), timeout: sendTimeout)
        } catch {
            limited.error("could not report a failed step", metadata: ["reason": "\(error)"])
        }
    }

    /// Starts measuring on `clock`: the returned function tells the time elapsed since.
    private static func stopwatch<C: Clock>(_ clock: C) -> () -> Duration where C.Duration == Duration {
        let start = clock.now
        return { start.duration(to: clock.now) }
    }

    /// Closes the transports.
    public func shutdown() async {
        await closeMirrorLinks()
        if let installed {
            await installed.next.close()
            await installed.results.close()
        }
        installed = nil
    }
}

/// The transport to a stage's next hop.
///
/// A next stage's data endpoint is connected at the first step sent there, not when the assignment
/// loads: the coordinator sends steps of a plan only once every stage reported its assignment
/// ready, and a worker admits the key of the stage before it (its ZAP allow-list) as soon as it
/// takes the assignment, so the handshake is never made too early. (libzmq does not retry a
/// handshake the peer refused: a connection made before the next stage knew the key would stay
/// dead.)
final class NextHop: Sendable {
    /// Where it connects.
    let endpoint: String
    private let serverKey: String
    private let dialer: any TransportDialer
    private let transport: LockedValue<(any Transport)?>

    /// A hop to `endpoint` (proving itself with `serverKey`), dialled through `dialer` at the first
    /// send unless `connected` is given.
    init(dialer: any TransportDialer, endpoint: String, serverKey: String, connected: (any Transport)?) {
        self.dialer = dialer
        self.endpoint = endpoint
        self.serverKey = serverKey
        self.transport = LockedValue(connected)
    }

    /// Sends `frames`, connecting first when this is the first step.
    func send(_ frames: [Message], timeout: Duration) async throws(TransportError) {
        let current = transport.withLock { $0 }
        let hop: any Transport
        if let current {
            hop = current
        } else {
            let made = try dialer.dial(endpoint, serverKey: serverKey)
            hop = transport.withLock { t in
                if let t { return t }  // another step connected meanwhile
                t = made
                return made
            }
            if hop !== made { await made.close() }
        }
        try await hop.send(frames, timeout: timeout)
    }

    /// Closes the transport, if it was connected.
    func close() async {
        await transport.withLock { $0 }?.close()
    }
}

/// Compute time of a stage's steps: moving averages for the coordinator's balance checks.
public struct StepStatistics: Sendable, Equatable {
    /// Steps since the stage was loaded.
    public private(set) var steps = 0
    /// Moving average of one step's compute time, milliseconds (0 before the first step).
    public private(set) var recentMilliseconds = 0.0
    /// Moving average of rows per step.
    public private(set) var recentRows = 0.0
    /// Layer-positions recomputed for replayed rows (after re-plans) since the stage was loaded.
    public var replayedLayerPositions: UInt64 = 0

    /// No steps yet.
    public init() {}

    /// Adds a step (weight 0.2 for the new sample; the first sample sets the averages).
    public mutating func record(milliseconds: Double, rows: Int) {
        let alpha = steps == 0 ? 1.0 : 0.2
        recentMilliseconds += alpha * (milliseconds - recentMilliseconds)
        recentRows += alpha * (Double(rows) - recentRows)
        steps += 1
    }
}
