import CaravanWire
import Planning

// The planner's values and their protobuf forms (`caravanctl plan` sends a model shape and prints
// a preview; the coordinator's admin desk reads the shape). Planning itself knows no wire type.

extension ModelFacts {
    /// Facts from their wire form (`PlanPreviewRequest.shape`); every size is checked, since a
    /// client sent it.
    public init(shape s: Caravan_V1_ModelShape) throws(PlanInputError) {
        guard !s.layerBytes.isEmpty, s.layerBytes.count <= 100_000 else {
            throw PlanInputError(description: "a model shape needs 1 to 100000 layers, got \(s.layerBytes.count)")
        }
        let limit = UInt64(1) << 50
        guard s.layerBytes.allSatisfy({ $0 > 0 && $0 < limit }), s.embeddingBytes < limit, s.outputBytes < limit,
              s.kvBytesPerTokenPerLayer < limit, s.layerMultiplyAdds < limit else {
            throw PlanInputError(description: "a model shape has an empty or implausible size")
        }
        self.init(layerCount: s.layerBytes.count, layerBytes: s.layerBytes.map { Int($0) },
                  embeddingBytes: Int(s.embeddingBytes), outputBytes: Int(s.outputBytes),
                  kvBytesPerTokenPerLayer: Int(s.kvBytesPerTokenPerLayer), vocabularySize: Int(s.vocabularySize),
                  embeddingLength: Int(s.embeddingLength), layerMultiplyAdds: Int(s.layerMultiplyAdds))
    }

    /// The wire form, named `name`.
    public func shape(name: String) -> Caravan_V1_ModelShape { Caravan_V1_ModelShape(modelShape(name: name)) }
}

extension PaperPrediction {
    /// The prediction as a `PlanPreview` (for `caravanctl plan --json`).
    public func preview(model: String, workers: [PaperWorker], contextTokens: Int, batchSequences: Int) -> Caravan_V1_PlanPreview {
        var p = Caravan_V1_PlanPreview()
        p.feasible = true
        p.modelName = model
        p.maxContextTokens = UInt32(clamping: contextTokens)
        p.maxBatchSequences = UInt32(clamping: batchSequences)
        p.estimatedTokensPerSecond = tokensPerSecond
        p.stages = plan.stages.enumerated().map { i, stage in
            var s = Caravan_V1_PlannedStage()
            s.workerID = stage.workerID
            s.layerStart = UInt32(stage.layers.start)
            s.layerEnd = UInt32(stage.layers.end)
            s.estimatedMemoryBytes = stage.memoryBytes
            s.estimatedStepMs = stageMs[i]
            s.workerMemoryBytes = workers.first { $0.id == stage.workerID }?.memoryBytes ?? 0
            return s
        }
        return p
    }
}
