import Planning

extension Member {
    /// The member as the rebalancer sees it (registration and heartbeat measurements).
    public var measured: MeasuredWorker {
        MeasuredWorker(workerID: workerID, memoryBytes: memoryBytes, speed: speed, holdings: holdings, stepsRun: stepsRun,
                       recentStepMs: recentStepMs)
    }
}

extension Rebalancer {
    /// `planInput` for members of the membership.
    public static func planInput(_ members: [Member], layersInPlan: [String: Double], minimumSteps: Int) -> [PlanWorker] {
        planInput(members.map(\.measured), layersInPlan: layersInPlan, minimumSteps: minimumSteps)
    }

    /// `evaluate` for members of the membership.
    public static func evaluate(stages: [(member: Member, layers: Int)], candidates: [Member], model: ModelFacts,
                                contextTokens: Int, batchSequences: Int, slowFactor: Double, minimumSteps: Int,
                                movement: MovementCost? = nil) -> Decision? {
        evaluate(stages: stages.map { (worker: $0.member.measured, layers: $0.layers) }, candidates: candidates.map(\.measured),
                 model: model, contextTokens: contextTokens, batchSequences: batchSequences, slowFactor: slowFactor,
                 minimumSteps: minimumSteps, movement: movement)
    }
}
