extension Caravan_V1_ModelIdentity {
    /// A model file's identity: its `name`, SHA-256, size in bytes and block count (clamped to
    /// `UInt32`; a receiver refuses a count that does not fit its layers; 0 = not said).
    public init(name: String, sha256: String, size: UInt64, layerCount: Int = 0) {
        self.init()
        self.name = name
        self.sha256 = sha256
        sizeBytes = size
        self.layerCount = UInt32(clamping: layerCount)
    }
}
