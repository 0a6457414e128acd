import CaravanCore

// A worker's pull progress and layer cache contents on the wire (control.proto). What a peer sent
// is checked here: out-of-range values are dropped or clamped, never trusted.

extension PullProgress {
    /// The wire message.
    public var wire: Caravan_V1_PullProgress {
        var w = Caravan_V1_PullProgress()
        w.layerStart = UInt32(clamping: layers.start)
        w.layerEnd = UInt32(clamping: layers.end)
        w.totalBytes = totalBytes
        w.doneBytes = doneBytes
        w.bytesPerSecond = bytesPerSecond.isFinite && bytesPerSecond > 0 ? bytesPerSecond : 0
        if let eta = etaSeconds, eta.isFinite, eta > 0 { w.etaMs = UInt64(min(eta * 1000, 1e15)) }
        return w
    }

    /// The progress a peer reported, or nil when its layer range is empty or reversed; bytes done
    /// are capped at the total, a rate that is not a finite positive number counts as unknown.
    public init?(wire w: Caravan_V1_PullProgress) {
        guard let layers = LayerRange(Int(w.layerStart), Int(w.layerEnd)) else { return nil }
        let rate = w.bytesPerSecond.isFinite && w.bytesPerSecond > 0 ? w.bytesPerSecond : 0
        self.init(layers: layers, totalBytes: w.totalBytes, doneBytes: min(w.doneBytes, w.totalBytes), bytesPerSecond: rate,
                  etaSeconds: w.etaMs > 0 ? Double(w.etaMs) / 1000 : nil)
    }
}

extension CachedLayers {
    /// The wire message.
    public var wire: Caravan_V1_CachedLayers {
        var w = Caravan_V1_CachedLayers()
        w.modelSha256 = modelSHA256
        w.layers = layers.prefix(Self.maxLayers).map { UInt32(clamping: $0) }
        w.embedding = embedding
        w.output = output
        return w
    }

    /// The report a peer sent, or nil when it names no well-formed model hash or lists more
    /// blocks than ``maxLayers``.
    public init?(wire w: Caravan_V1_CachedLayers) {
        guard w.modelSha256.count == 64, w.modelSha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
              w.layers.count <= Self.maxLayers else { return nil }
        self.init(modelSHA256: w.modelSha256, layers: w.layers.map { Int($0) }, embedding: w.embedding, output: w.output)
    }

    /// The reports of a peer's message: the well-formed ones among the first ``maxModels``.
    public static func fromWire(_ list: [Caravan_V1_CachedLayers]) -> [CachedLayers] {
        list.prefix(maxModels).compactMap { CachedLayers(wire: $0) }
    }
}
