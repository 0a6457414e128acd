import CaravanCore

/// The layer ranges of other stages a worker keeps copies of in its layer cache (standby copies),
/// pulled in the background once its own stage serves, so that the recovery plan after the loss
/// of their worker can give them to this one with no pull. Replaces any earlier one; no ranges =
/// keep none.
public struct StandbyAssignment: Sendable, Equatable {
    /// The plan the ranges were placed for.
    public var planEpoch: UInt64
    /// File name of the model (for logs).
    public var modelName: String
    /// SHA-256 of the model file.
    public var modelSHA256: String
    /// Model size in bytes.
    public var modelSize: UInt64
    /// Transformer blocks in the model.
    public var modelLayerCount: Int
    /// The ranges, ascending and disjoint. A range from layer 0 includes the token embedding, one
    /// ending at the last layer the output norm and matrix.
    public var ranges: [LayerRange]
    /// The worker as the owner of a stage: where it streams the KV rows of the layers other
    /// workers keep standby copies of (empty: it mirrors nothing).
    public var mirrors: [KVMirrorTarget] = []

    /// Creates an assignment.
    public init(planEpoch: UInt64, modelName: String, modelSHA256: String, modelSize: UInt64, modelLayerCount: Int,
                ranges: [LayerRange]) {
        self.planEpoch = planEpoch
        self.modelName = modelName
        self.modelSHA256 = modelSHA256
        self.modelSize = modelSize
        self.modelLayerCount = modelLayerCount
        self.ranges = ranges
    }

    /// The pull of range `range` of this model (what a stage running it would load).
    public func pull(_ range: LayerRange) -> LayerPull {
        LayerPull(modelName: modelName, modelSHA256: modelSHA256, modelSize: modelSize, modelLayerCount: modelLayerCount,
                  layers: range)
    }
}

/// What a pull of layers fetches: the bytes a stage running `layers` of a model loads (its
/// blocks, the embedding for a range from layer 0, the output for one ending at the last layer).
public struct LayerPull: Sendable, Equatable {
    /// File name of the model (for logs).
    public var modelName: String
    /// SHA-256 of the model file.
    public var modelSHA256: String
    /// Model size in bytes (0 = unknown: the model source's is taken).
    public var modelSize: UInt64
    /// Transformer blocks in the model.
    public var modelLayerCount: Int
    /// The layers.
    public var layers: LayerRange

    /// Creates a pull.
    public init(modelName: String, modelSHA256: String, modelSize: UInt64, modelLayerCount: Int, layers: LayerRange) {
        self.modelName = modelName
        self.modelSHA256 = modelSHA256
        self.modelSize = modelSize
        self.modelLayerCount = modelLayerCount
        self.layers = layers
    }
}

extension StageAssignment {
    /// The pull of this stage's layers.
    public var pull: LayerPull {
        LayerPull(modelName: modelName, modelSHA256: modelSHA256, modelSize: modelSize, modelLayerCount: modelLayerCount,
                  layers: layers)
    }
}

extension StandbyAssignment {
    /// The wire message.
    public var wire: Caravan_V1_StandbyAssignment {
        var m = Caravan_V1_StandbyAssignment()
        m.planEpoch = planEpoch
        m.model = Caravan_V1_ModelIdentity(name: modelName, sha256: modelSHA256, size: modelSize, layerCount: modelLayerCount)
        m.ranges = ranges.map(\.span)
        m.mirrors = mirrors.map(\.wire)
        return m
    }

    /// The assignment in a received message (already checked by ``WireCodec``: ranges ascending,
    /// disjoint, within the model).
    public init(wire m: Caravan_V1_StandbyAssignment) throws(WireError) {
        guard m.model.layerCount > 0 else { throw .missingField("standby_assignment.model.layer_count") }
        var ranges: [LayerRange] = []
        for (i, span) in m.ranges.enumerated() {
            guard let r = LayerRange(span: span), r.end <= Int(m.model.layerCount) else {
                throw .invalidField("standby_assignment.ranges[\(i)]", reason: "[\(span.layerStart), \(span.layerEnd)) is not a range of the model")
            }
            ranges.append(r)
        }
        self.init(planEpoch: m.planEpoch, modelName: m.model.name, modelSHA256: m.model.sha256, modelSize: m.model.sizeBytes,
                  modelLayerCount: Int(m.model.layerCount), ranges: ranges)
        mirrors = try m.mirrors.enumerated().map { (i, t) throws(WireError) in
            guard let r = LayerRange(span: t.layers), r.end <= Int(m.model.layerCount) else {
                throw .invalidField("standby_assignment.mirrors[\(i)].layers", reason: "not a range of the model")
            }
            return KVMirrorTarget(layers: r, holderAddress: t.holderAddress, holderPublicKey: t.holderPublicKey, holderID: t.holderID)
        }
    }
}

/// Where the owner of some layers streams their KV rows: the worker keeping a standby copy of
/// them (``StandbyAssignment/mirrors``).
public struct KVMirrorTarget: Sendable, Equatable {
    /// The layers mirrored there.
    public var layers: LayerRange
    /// The holder's data endpoint.
    public var holderAddress: String
    /// The holder's CURVE public key (empty in plain mode).
    public var holderPublicKey: String
    /// The holder's worker id, for logs.
    public var holderID: String

    /// A target.
    public init(layers: LayerRange, holderAddress: String, holderPublicKey: String, holderID: String) {
        self.layers = layers
        self.holderAddress = holderAddress
        self.holderPublicKey = holderPublicKey
        self.holderID = holderID
    }

    /// The wire message.
    public var wire: Caravan_V1_KVMirror {
        var m = Caravan_V1_KVMirror()
        m.layers = layers.span
        m.holderAddress = holderAddress
        m.holderPublicKey = holderPublicKey
        m.holderID = holderID
        return m
    }
}
