import CaravanCore

/// A worker as the rebalancer sees it: what it registered and what its heartbeats measured.
public struct MeasuredWorker: Sendable, Equatable {
    /// Worker id.
    public var workerID: String
    /// Memory it offers, bytes.
    public var memoryBytes: UInt64
    /// Its registered relative speed.
    public var speed: Double
    /// What it holds of the model without a pull.
    public var holdings: LayerHoldings
    /// Steps run since its stage was loaded.
    public var stepsRun: UInt64
    /// Recent compute time of one step, milliseconds (0 = no steps yet; a peer may report any
    /// number, so non-finite values are possible and ignored).
    public var recentStepMs: Float

    /// A measured worker.
    public init(workerID: String, memoryBytes: UInt64, speed: Double, holdings: LayerHoldings = LayerHoldings(),
                stepsRun: UInt64 = 0, recentStepMs: Float = 0) {
        self.workerID = workerID
        self.memoryBytes = memoryBytes
        self.speed = speed
        self.holdings = holdings
        self.stepsRun = stepsRun
        self.recentStepMs = recentStepMs
    }
}

/// The slow-worker rule as pure functions: speeds measured on the running pipeline, and whether a
/// new plan would cut the bottleneck enough to be worth a switch (hysteresis against flapping).
public enum Rebalancer {
    /// Planner input for `workers`: a worker of the running plan that has run at least
    /// `minimumSteps` steps gets its measured speed (layers per millisecond of step time; every
    /// stage sees the same batches, so these compare fairly); the others keep their registered
    /// speed, scaled by the average measured/registered ratio so that both kinds stay comparable.
    /// `layersInPlan` is each stage's work in layers (the last stage's output matrix included).
    public static func planInput(_ workers: [MeasuredWorker], layersInPlan: [String: Double], minimumSteps: Int) -> [PlanWorker] {
        // Ids are unique in a membership, but a duplicate must not trap: the first one counts.
        let measured = Dictionary(workers.compactMap { m -> (String, Double)? in
            guard let layers = layersInPlan[m.workerID], m.recentStepMs.isFinite, m.recentStepMs > 0,
                  m.stepsRun >= UInt64(minimumSteps) else { return nil }
            return (m.workerID, layers / Double(m.recentStepMs))
        }, uniquingKeysWith: { first, _ in first })
        let ratios = workers.compactMap { m -> Double? in
            guard let s = measured[m.workerID], m.speed > 0 else { return nil }
            return s / m.speed
        }
        let scale = ratios.isEmpty ? 1 : ratios.reduce(0, +) / Double(ratios.count)
        return workers.map { m in
            PlanWorker(id: m.workerID, memoryBytes: m.memoryBytes, speed: measured[m.workerID] ?? m.speed * scale,
                       holdings: m.holdings)
        }
    }

    /// Each stage's work in layers, by worker id (stages in pipeline order). The last stage also
    /// runs the output matrix: it counts as ``ModelFacts/outputWorkInLayers`` layers, as the
    /// planner counts it, so that a balanced pipeline does not look like a slow last stage.
    public static func stageWork(_ stages: [(workerID: String, layers: Int)], model: ModelFacts) -> [String: Double] {
        let outputWork = stages.count > 1 ? model.outputWorkInLayers : 0
        var work: [String: Double] = [:]
        for (i, stage) in stages.enumerated() {
            work[stage.workerID] = Double(stage.layers) + (i == stages.count - 1 ? outputWork : 0)
        }
        return work
    }

    /// A re-plan worth doing: why, and the bottleneck step times now and predicted.
    public struct Decision: Sendable, Equatable {
        /// The reason recorded with the new plan.
        public var reason: String
        /// The slowest stage's step time now, milliseconds.
        public var currentMs: Double
        /// The slowest stage's predicted step time after re-planning, milliseconds.
        public var predictedMs: Double
        /// Bytes the new plan makes workers pull.
        public var moveBytes: UInt64 = 0
        /// Time those pulls take at the link speed, seconds.
        public var moveSeconds: Double = 0
        /// Steps the slowest stage has run (since its load).
        public var slowestSteps: UInt64 = 0

        /// A decision.
        public init(reason: String, currentMs: Double, predictedMs: Double, moveBytes: UInt64 = 0, moveSeconds: Double = 0,
                    slowestSteps: UInt64 = 0) {
            self.reason = reason
            self.currentMs = currentMs
            self.predictedMs = predictedMs
            self.moveBytes = moveBytes
            self.moveSeconds = moveSeconds
            self.slowestSteps = slowestSteps
        }
    }

    /// Whether to re-plan: `stages` are the running plan's workers with their layer counts, in
    /// order; `candidates` every worker that may take layers. Nil unless every stage has enough
    /// measurements and the plan with measured speeds predicts a bottleneck below `slowFactor` of
    /// today's.
    /// With `movement`, the new plan weighs the bytes it moves (``Planner/plan(model:workers:contextTokens:batchSequences:overheadBytes:movement:)``)
    /// and the decision says how long they take to move; ``SlowWatch`` then decides whether the
    /// gain pays for them.
    public static func evaluate(stages: [(worker: MeasuredWorker, layers: Int)], candidates: [MeasuredWorker], model: ModelFacts,
                                contextTokens: Int, batchSequences: Int, slowFactor: Double,
                                 minimumSteps: Int, movement: MovementCost? = nil) -> Decision? {
        guard !stages.isEmpty, stages.allSatisfy({
            $0.worker.recentStepMs.isFinite && $0.worker.recentStepMs > 0 && $0.worker.stepsRun >= UInt64(minimumSteps)
        }) else { return nil }
        let current = stages.map { Double($0.worker.recentStepMs) }.max() ?? 0
        guard current > 0 else { return nil }
        let layersInPlan = stageWork(stages.map { ($0.worker.workerID, $0.layers) }, model: model)
        let workers = planInput(candidates, layersInPlan: layersInPlan, minimumSteps: minimumSteps)
        guard var plan = try? Planner.plan(model: model, workers: workers, contextTokens: contextTokens,
                                           batchSequences: batchSequences) else { return nil }
        let speeds = Dictionary(workers.map { ($0.id, $0.speed) }, uniquingKeysWith: { a, _ in a })
        func bottleneck(_ p: PipelinePlan) -> Double {
            let outputWork = p.stages.count > 1 ? model.outputWorkInLayers : 0
            return p.stages.map { s in
                (Double(s.layers.count) + (s.layers.end == model.layerCount ? outputWork : 0)) / max(1e-9, speeds[s.workerID] ?? 1e-9)
            }.max() ?? current
        }
        // The proportional plan first (cheap): when even it gains too little, nothing does.
        guard bottleneck(plan) < slowFactor * current else { return nil }
        if let movement {
            // The plan worth making once the bytes it moves are weighed.
            guard let weighed = try? Planner.plan(model: model, workers: workers, contextTokens: contextTokens,
                                                  batchSequences: batchSequences, movement: movement) else { return nil }
            plan = weighed
        }
        let predicted = bottleneck(plan)
        guard predicted < slowFactor * current,
              let slowest = stages.max(by: { $0.worker.recentStepMs < $1.worker.recentStepMs }) else { return nil }
        let reason = "worker \(slowest.worker.workerID) is slow (\(Self.format(Double(slowest.worker.recentStepMs))) ms per step for "
            + "\(slowest.layers) layers); a new plan predicts \(Self.format(predicted)) ms instead of \(Self.format(current)) ms"
        let moveBytes = Planner.pullBytes(plan, workers: workers, model: model)
        let moveSeconds = movement.map { Double(moveBytes) / max(1, $0.linkBytesPerSecond) } ?? 0
        return Decision(reason: reason, currentMs: current, predictedMs: predicted, moveBytes: moveBytes, moveSeconds: moveSeconds,
                        slowestSteps: slowest.worker.stepsRun)
    }

    /// `v` with one decimal, for reasons and logs (the plain value when it is not a finite number
    /// that fits an `Int`).
    public static func format(_ v: Double) -> String {
        guard let tenths = CheckedArithmetic.int((v * 10).rounded()) else { return "\(v)" }
        return String(Double(tenths) / 10)
    }
}
