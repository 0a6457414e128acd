import GGUF

/// Hyper-parameters of a LLaMA-family model, read from GGUF metadata as llama.cpp reads them.
public struct LlamaConfiguration: Sendable, Equatable {
    /// `general.architecture` (the metadata key prefix).
    public var architecture: String
    /// Number of transformer blocks.
    public var layerCount: Int
    /// Model (embedding) width.
    public var embeddingLength: Int
    /// Hidden width of the SwiGLU feed-forward block.
    public var feedForwardLength: Int
    /// Query heads.
    public var headCount: Int
    /// Key/value heads (grouped-query attention when fewer than `headCount`).
    public var kvHeadCount: Int
    /// Width of one attention head.
    public var headDimension: Int
    /// RMSNorm epsilon.
    public var rmsEpsilon: Float
    /// RoPE base frequency.
    public var ropeBase: Float
    /// Number of dimensions of each head that RoPE rotates.
    public var ropeDimensions: Int
    /// Linear RoPE scaling factor (positions are divided by it); 1 when unscaled.
    public var ropeLinearScale: Float
    /// Training context length.
    public var contextLength: Int
    /// Vocabulary size (rows of the embedding matrix).
    public var vocabularySize: Int

    /// Width of the key (and value) projections: `kvHeadCount * headDimension`.
    public var kvDimension: Int { kvHeadCount * headDimension }
    /// Query heads per key/value head.
    public var groupSize: Int { headCount / kvHeadCount }

    /// Architectures that run on this implementation (Mistral files use `llama`).
    public static let supportedArchitectures: Set<String> = ["llama"]

    /// The largest width, head count or context length a file may declare (2^24): these numbers
    /// size allocations (per-layer tables, work buffers, KV caches) before any tensor is read, so
    /// a hostile file must not be able to ask for 2^40 of them.
    public static let maxDimension = 1 << 24

    /// Reads and validates the configuration of `file`.
    public init(file: GGUFFile) throws(GGUFError) {
        let path = file.path
        guard let arch = file.architecture else { throw .missingMetadata(path: path, key: "general.architecture") }
        guard Self.supportedArchitectures.contains(arch) else {
            throw .unsupportedArchitecture(path: path, architecture: arch)
        }
        func int(_ key: String) throws(GGUFError) -> Int {
            guard let v = file.int("\(arch).\(key)"), v > 0 else { throw .missingMetadata(path: path, key: "\(arch).\(key)") }
            try bounded(v, key)
            return v
        }
        func bounded(_ v: Int, _ key: String) throws(GGUFError) {
            guard v <= Self.maxDimension else {
                throw .corrupt(path: path, what: "\(arch).\(key) is \(v) (at most \(Self.maxDimension))")
            }
        }
        architecture = arch
        layerCount = try int("block_count")
        // Every block has its tensors in the file, so the count is at most the tensor count.
        guard layerCount <= file.tensorInfos.count else {
            throw .corrupt(path: path, what: "block_count \(layerCount) exceeds the file's \(file.tensorInfos.count) tensors")
        }
        embeddingLength = try int("embedding_length")
        feedForwardLength = try int("feed_forward_length")
        headCount = try int("attention.head_count")
        kvHeadCount = file.int("\(arch).attention.head_count_kv") ?? headCount
        guard kvHeadCount > 0, headCount % kvHeadCount == 0 else {
            throw .corrupt(path: path, what: "head_count \(headCount) is not a multiple of head_count_kv \(kvHeadCount)")
        }
        headDimension = file.int("\(arch).attention.key_length") ?? (embeddingLength / headCount)
        guard headDimension > 0, headDimension % 2 == 0 else {
            throw .corrupt(path: path, what: "head dimension \(headDimension) must be even")
        }
        try bounded(headDimension, "attention.key_length")
        // The products the stage multiplies out must fit too.
        guard headCount.multipliedReportingOverflow(by: headDimension).partialValue <= Self.maxDimension,
              !headCount.multipliedReportingOverflow(by: headDimension).overflow else {
            throw .corrupt(path: path, what: "head_count \(headCount) x head dimension \(headDimension) is too large")
        }
        if let v = file.int("\(arch).attention.value_length"), v != headDimension {
            throw .corrupt(path: path, what: "value_length \(v) differs from key_length \(headDimension) (unsupported)")
        }
        rmsEpsilon = Float(file.float("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-5)
        ropeBase = Float(file.float("\(arch).rope.freq_base") ?? 10_000)
        ropeDimensions = file.int("\(arch).rope.dimension_count") ?? headDimension
        guard ropeDimensions > 0, ropeDimensions <= headDimension, ropeDimensions % 2 == 0 else {
            throw .corrupt(path: path, what: "rope.dimension_count \(ropeDimensions) is invalid for head dimension \(headDimension)")
        }
        var scale: Float = 1
        if let type = file.string("\(arch).rope.scaling.type"), type == "linear",
           let factor = file.float("\(arch).rope.scaling.factor"), factor > 0 {
            scale = Float(factor)
        }
        ropeLinearScale = scale
        contextLength = file.int("\(arch).context_length") ?? 2048
        guard contextLength > 0 else { throw .corrupt(path: path, what: "\(arch).context_length \(contextLength) is not positive") }
        try bounded(contextLength, "context_length")
        let embedding = try file.requireTensor("token_embd.weight")
        guard embedding.dimensions.count == 2, embedding.dimensions[0] == embeddingLength else {
            throw .badTensorShape(path: path, tensor: embedding.name, expected: [embeddingLength, -1],
                                  actual: embedding.dimensions)
        }
        vocabularySize = embedding.dimensions[1]
    }
}
