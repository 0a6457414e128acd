/// The sizes of a model the planner needs (what the coordinator reads from a GGUF tensor index),
/// for planning a model the coordinator does not serve.
public struct ModelShape: Sendable, Equatable {
    /// A name for reports.
    public var name: String
    /// Weight bytes of each transformer block, in order (its count is the layer count).
    public var layerBytes: [UInt64]
    /// Bytes only the first stage needs (token embedding).
    public var embeddingBytes: UInt64
    /// Bytes only the last stage needs (output norm and head).
    public var outputBytes: UInt64
    /// KV cache bytes per token per layer.
    public var kvBytesPerTokenPerLayer: UInt64
    /// Hidden width (activation elements per token).
    public var embeddingLength: Int
    /// Vocabulary size.
    public var vocabularySize: Int
    /// Multiply-adds of one token through a block's matrices, on average (0: not counted).
    public var layerMultiplyAdds: UInt64

    /// Creates a shape.
    public init(name: String, layerBytes: [UInt64], embeddingBytes: UInt64, outputBytes: UInt64, kvBytesPerTokenPerLayer: UInt64,
                embeddingLength: Int, vocabularySize: Int, layerMultiplyAdds: UInt64 = 0) {
        self.name = name
        self.layerBytes = layerBytes
        self.embeddingBytes = embeddingBytes
        self.outputBytes = outputBytes
        self.kvBytesPerTokenPerLayer = kvBytesPerTokenPerLayer
        self.embeddingLength = embeddingLength
        self.vocabularySize = vocabularySize
        self.layerMultiplyAdds = layerMultiplyAdds
    }
}

/// What an operator asks the coordinator's planner (it changes nothing).
public struct PlanPreviewRequest: Sendable, Equatable {
    /// Plan this model instead of the served one (nil: the served model).
    public var shape: ModelShape?
    /// Workers to leave out (e.g. before draining them).
    public var excludedWorkers: [String]
    /// Context per sequence to size KV caches for (nil: the coordinator's).
    public var maxContextTokens: Int?
    /// Sequences to size KV caches for (nil: the coordinator's).
    public var maxBatchSequences: Int?

    /// Creates a request.
    public init(shape: ModelShape? = nil, excludedWorkers: [String] = [], maxContextTokens: Int? = nil,
                maxBatchSequences: Int? = nil) {
        self.shape = shape
        self.excludedWorkers = excludedWorkers
        self.maxContextTokens = maxContextTokens
        self.maxBatchSequences = maxBatchSequences
    }
}

/// The plan the coordinator would make.
public struct PlanPreview: Sendable, Equatable {
    /// Whether a plan fits; if not, ``reason`` says why and there are no stages.
    public var feasible: Bool
    /// Why no plan fits.
    public var reason: String
    /// Stages in pipeline order.
    public var stages: [StageReport]
    /// Estimated single-sequence decode speed, tokens per second (0: unknown).
    public var estimatedTokensPerSecond: Double
    /// The model planned for.
    public var modelName: String
    /// Context per sequence the KV caches were sized for.
    public var maxContextTokens: Int
    /// Sequences the KV caches were sized for.
    public var maxBatchSequences: Int

    /// Creates a preview.
    public init(feasible: Bool, reason: String = "", stages: [StageReport] = [], estimatedTokensPerSecond: Double = 0,
                modelName: String = "", maxContextTokens: Int = 0, maxBatchSequences: Int = 0) {
        self.feasible = feasible
        self.reason = reason
        self.stages = stages
        self.estimatedTokensPerSecond = estimatedTokensPerSecond
        self.modelName = modelName
        self.maxContextTokens = maxContextTokens
        self.maxBatchSequences = maxBatchSequences
    }
}
