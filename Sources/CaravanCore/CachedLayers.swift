/// What a worker's layer cache holds of one model: the blocks it pulled whole (verified against
/// their checksums) and whether it holds the embedding and the output. The planner counts these
/// as bytes the worker need not pull.
public struct CachedLayers: Sendable, Equatable {
    /// SHA-256 of the model file.
    public var modelSHA256: String
    /// Transformer blocks held whole, ascending.
    public var layers: [Int]
    /// It holds the token embedding.
    public var embedding: Bool
    /// It holds the output norm and matrix.
    public var output: Bool

    /// A report; `layers` are sorted and made unique.
    public init(modelSHA256: String, layers: [Int], embedding: Bool, output: Bool) {
        self.modelSHA256 = modelSHA256
        self.layers = Array(Set(layers)).sorted()
        self.embedding = embedding
        self.output = output
    }

    /// Most models a worker reports, and most blocks per model (a peer may send no more).
    public static let maxModels = 16
    public static let maxLayers = 4096
}
