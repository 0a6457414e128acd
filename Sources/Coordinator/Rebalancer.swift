import CaravanCore

/// The slow-worker rule as pure functions: speeds measured on the running pipeline, and whether a
/// new plan would cut the bottleneck enough to be worth a switch (hysteresis against flapping).
public enum Rebalancer {
    /// Planner input for `workers`: a worker of the running plan that has run at least
    /// `minimumSteps` steps gets its measured speed (layers per millisecond of step time; every
    /// stage sees the same batches, so these compare fairly); the others keep their registered
    /// speed, scaled by the average measured/registered ratio so that both kinds stay comparable.
    /// `layersInPlan` is each stage's work in layers (the last stage's output matrix included).
    public static func planInput(_ workers: [Member], layersInPlan: [String: Double], minimumSteps: Int) -> [PlanWorker] {
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
            PlanWorker(id: m.workerID, memoryBytes: m.memoryBytes, speed: measured[m.workerID] ?? m.speed * scale)
        }
    }

    /// Each stage's work in layers, by worker id (stages in pipeline order). The last stage also
    /// runs the output matrix: it counts as the layers its bytes weigh, as the planner does, so
    /// that a balanced pipeline does not look like a slow last stage.
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
    }

    /// Whether to re-plan: `stages` are the running plan's workers with their layer counts, in
    /// order; `candidates` every worker that may take layers. Nil unless every stage has enough
    /// measurements and the plan with measured speeds predicts a bottleneck below `slowFactor` of
    /// today's.
    public static func evaluate(stages: [(member: Member, layers: Int)], candidates: [Member], model: ModelFacts,
                                contextTokens: Int, batchSequences: Int, slowFactor: Double,
                                minimumSteps: Int) -> Decision? {
        guard !stages.isEmpty, stages.allSatisfy({
            $0.member.recentStepMs.isFinite && $0.member.recentStepMs > 0 && $0.member.stepsRun >= UInt64(minimumSteps)
        }) else { return nil }
        let current = stages.map { Double($0.member.recentStepMs) }.max() ?? 0
        guard current > 0 else { return nil }
        let layersInPlan = stageWork(stages.map { ($0.member.workerID, $0.layers) }, model: model)
        let workers = planInput(candidates, layersInPlan: layersInPlan, minimumSteps: minimumSteps)
        guard let plan = try? Planner.plan(model: model, workers: workers, contextTokens: contextTokens,
                                           batchSequences: batchSequences) else { return nil }
        let speeds = Dictionary(workers.map { ($0.id, $0.speed) }, uniquingKeysWith: { a, _ in a })
        let predicted = plan.stages.map { Double($0.layers.count) / max(1e-9, speeds[$0.workerID] ?? 1e-9) }.max() ?? current
        guard predicted < slowFactor * current,
              let slowest = stages.max(by: { $0.member.recentStepMs < $1.member.recentStepMs }) else { return nil }
        let reason = "worker \(slowest.member.workerID) is slow (\(Self.format(Double(slowest.member.recentStepMs))) ms per step for "
            + "\(slowest.layers) layers); a new plan predicts \(Self.format(predicted)) ms instead of \(Self.format(current)) ms"
        return Decision(reason: reason, currentMs: current, predictedMs: predicted)
    }

    static func format(_ v: Double) -> String {
        guard let tenths = CheckedArithmetic.int((v * 10).rounded()) else { return "\(v)" }
        return String(Double(tenths) / 10)
    }
}
