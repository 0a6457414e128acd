import CaravanCore

// The planner's values and CaravanCore's admin values (`caravanctl plan` sends a model shape and
// prints a preview; the coordinator's admin desk plans a shape it was sent). Their wire forms are
// `CaravanWire`'s (`ClusterReport+Wire.swift`); Planning knows no wire type.

extension ModelFacts {
    /// The sizes a coordinator needs to plan this model (``ModelShape``), named `name`.
    public func modelShape(name: String) -> ModelShape {
        ModelShape(name: name, layerBytes: layerBytes.map { UInt64(clamping: $0) }, embeddingBytes: UInt64(clamping: embeddingBytes),
                   outputBytes: UInt64(clamping: outputBytes), kvBytesPerTokenPerLayer: UInt64(clamping: kvBytesPerTokenPerLayer),
                   embeddingLength: embeddingLength, vocabularySize: vocabularySize, layerMultiplyAdds: UInt64(clamping: layerMultiplyAdds))
    }

    /// Facts from a shape a client sent (`PlanPreviewRequest.shape`); every size is checked.
    public init(shape s: ModelShape) throws(PlanInputError) {
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
                  kvBytesPerTokenPerLayer: Int(s.kvBytesPerTokenPerLayer), vocabularySize: s.vocabularySize,
                  embeddingLength: s.embeddingLength, layerMultiplyAdds: Int(s.layerMultiplyAdds))
    }
}

extension PaperPrediction {
    /// The prediction as a plan preview (`caravanctl plan --json` prints its wire form).
    public func preview(model: String, workers: [PaperWorker], contextTokens: Int, batchSequences: Int) -> PlanPreview {
        PlanPreview(feasible: true, stages: plan.stages.enumerated().map { i, stage in
            StageReport(workerID: stage.workerID, layers: stage.layers, estimatedMemoryBytes: stage.memoryBytes,
                        estimatedStepMs: stageMs[i], workerMemoryBytes: workers.first { $0.id == stage.workerID }?.memoryBytes ?? 0)
        }, estimatedTokensPerSecond: tokensPerSecond, modelName: model, maxContextTokens: contextTokens,
                    maxBatchSequences: batchSequences)
    }
}
