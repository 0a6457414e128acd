import CaravanCore

/// What one worker runs in a plan: a layer range of a model, where its output goes, and the limits
/// its KV cache and batches must hold.
public struct StageAssignment: Sendable, Equatable {
    /// The plan this assignment belongs to (positive; increases with every re-plan).
    public var planEpoch: UInt64
    /// File name of the model (for logs).
    public var modelName: String
    /// SHA-256 of the model file (the worker must hold a file with this hash).
    public var modelSHA256: String
    /// Model size in bytes.
    public var modelSize: UInt64
    /// Transformer blocks in the model.
    public var modelLayerCount: Int
    /// The layers this stage runs.
    public var layers: LayerRange
    /// Position in the pipeline (0 = first).
    public var stageIndex: Int
    /// Number of stages in the pipeline.
    public var stageCount: Int
    /// Where the stage's output goes: the next stage's data endpoint, or the coordinator's result
    /// endpoint for the last stage.
    public var nextHop: String
    /// CURVE public key of the next hop (empty in plain mode).
    public var nextHopPublicKey: String = ""
    /// The coordinator's result endpoint (failed steps are reported there by every stage).
    public var resultAddress: String
    /// CURVE public keys (Z85) of the clients the worker's data socket admits under this
    /// assignment: the coordinator's and the previous stage's worker's. Replaces the set of the
    /// previous assignment; empty in plain mode.
    public var dataClientKeys: [String] = []
    /// Activation element type between stages.
    public var activationDType: TensorDType
    /// Longest sequence the KV cache must hold.
    public var maxContextTokens: Int
    /// Most sequences in one step.
    public var maxBatchSequences: Int
    /// Most rows in one step.
    public var maxBatchTokens: Int
    /// After a re-plan: the sequences that go on under this plan, each with the positions every
    /// stage of the previous plan computed (committed). The stage keeps what it can reuse of them
    /// and forgets every other sequence. Empty on a first plan.
    public var continuing: [SequenceID: Int] = [:]

    /// Most continuing sequences one assignment carries (the wire rule).
    public static let maxContinuing = 8192

    /// Creates an assignment.
    public init(planEpoch: UInt64, modelName: String, modelSHA256: String, modelSize: UInt64, modelLayerCount: Int,
                layers: LayerRange, stageIndex: Int, stageCount: Int, nextHop: String, resultAddress: String,
                activationDType: TensorDType, maxContextTokens: Int, maxBatchSequences: Int, maxBatchTokens: Int) {
        self.planEpoch = planEpoch
        self.modelName = modelName
        self.modelSHA256 = modelSHA256
        self.modelSize = modelSize
        self.modelLayerCount = modelLayerCount
        self.layers = layers
        self.stageIndex = stageIndex
        self.stageCount = stageCount
        self.nextHop = nextHop
        self.resultAddress = resultAddress
        self.activationDType = activationDType
        self.maxContextTokens = maxContextTokens
        self.maxBatchSequences = maxBatchSequences
        self.maxBatchTokens = maxBatchTokens
    }

    /// Whether the stage embeds tokens (the first).
    public var embedsTokens: Bool { layers.start == 0 }
    /// Whether the stage produces logits (the last).
    public var producesLogits: Bool { layers.end == modelLayerCount }
}

extension StageAssignment {
    /// The wire message.
    public var wire: Caravan_V1_StageAssignment {
        var m = Caravan_V1_StageAssignment()
        m.planEpoch = planEpoch
        m.model = Caravan_V1_ModelIdentity(name: modelName, sha256: modelSHA256, size: modelSize, layerCount: modelLayerCount)
        m.layerStart = UInt32(layers.start)
        m.layerEnd = UInt32(layers.end)
        m.stageIndex = UInt32(stageIndex)
        m.stageCount = UInt32(stageCount)
        m.embedsTokens = embedsTokens
        m.producesLogits = producesLogits
        m.nextHopAddress = nextHop
        m.nextHopPublicKey = nextHopPublicKey
        m.resultAddress = resultAddress
        m.dataClientKeys = dataClientKeys
        m.activationDtype = activationDType.wire
        m.maxContextTokens = UInt32(clamping: maxContextTokens)
        m.maxBatchSequences = UInt32(clamping: maxBatchSequences)
        m.maxBatchTokens = UInt32(clamping: maxBatchTokens)
        m.continuing = continuing.sorted { $0.key < $1.key }.prefix(Self.maxContinuing).map { id, committed in
            var c = Caravan_V1_ContinuingSequence()
            c.sequenceID = id.rawValue
            c.committedPositions = UInt32(clamping: committed)
            return c
        }
        return m
    }

    /// The assignment in a received message (already checked by ``WireCodec``); throws when the
    /// fields contradict each other.
    public init(wire m: Caravan_V1_StageAssignment) throws(WireError) {
        guard let layers = LayerRange(Int(m.layerStart), Int(m.layerEnd)) else {
            throw .invalidField("stage_assignment.layer_end", reason: "empty layer range [\(m.layerStart), \(m.layerEnd))")
        }
        guard m.model.layerCount > 0, m.layerEnd <= m.model.layerCount else {
            throw .invalidField("stage_assignment.model.layer_count", reason: "\(m.model.layerCount) does not cover layer \(m.layerEnd)")
        }
        guard m.embedsTokens == (m.layerStart == 0), m.producesLogits == (m.layerEnd == m.model.layerCount) else {
            throw .invalidField("stage_assignment.embeds_tokens", reason: "first/last flags contradict the layer range")
        }
        self.init(planEpoch: m.planEpoch, modelName: m.model.name, modelSHA256: m.model.sha256, modelSize: m.model.sizeBytes,
                  modelLayerCount: Int(m.model.layerCount), layers: layers, stageIndex: Int(m.stageIndex),
                  stageCount: Int(m.stageCount), nextHop: m.nextHopAddress, resultAddress: m.resultAddress,
                  activationDType: try TensorDType(wire: m.activationDtype), maxContextTokens: Int(m.maxContextTokens),
                  maxBatchSequences: Int(m.maxBatchSequences), maxBatchTokens: Int(m.maxBatchTokens))
        nextHopPublicKey = m.nextHopPublicKey
        dataClientKeys = m.dataClientKeys
        // A sequence named twice keeps the smaller count (never more than every stage computed).
        continuing = Dictionary(m.continuing.map { (SequenceID($0.sequenceID), Int($0.committedPositions)) },
                                uniquingKeysWith: { a, b in min(a, b) })
    }
}
