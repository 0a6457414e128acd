import CaravanCore

extension LayerRange {
    /// The wire form.
    public var span: Caravan_V1_LayerSpan {
        var s = Caravan_V1_LayerSpan()
        s.layerStart = UInt32(clamping: start)
        s.layerEnd = UInt32(clamping: end)
        return s
    }

    /// The range of a wire span; nil when it is empty.
    public init?(span s: Caravan_V1_LayerSpan) {
        self.init(Int(s.layerStart), Int(s.layerEnd))
    }
}
