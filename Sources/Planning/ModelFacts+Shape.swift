import CaravanCore

extension ModelFacts {
    /// The sizes a coordinator needs to plan this model (``ModelShape``), named `name`.
    public func modelShape(name: String) -> ModelShape {
        ModelShape(name: name, layerBytes: layerBytes.map { UInt64(clamping: $0) }, embeddingBytes: UInt64(clamping: embeddingBytes),
                   outputBytes: UInt64(clamping: outputBytes), kvBytesPerTokenPerLayer: UInt64(clamping: kvBytesPerTokenPerLayer),
                   embeddingLength: embeddingLength, vocabularySize: vocabularySize, layerMultiplyAdds: UInt64(clamping: layerMultiplyAdds))
    }
}
