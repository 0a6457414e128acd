/// The architecture numbers of a LLaMA-family model, enough to size it without its file.
public struct ModelArchitecture: Sendable, Equatable {
    /// A name for reports.
    public var name: String
    /// Transformer blocks.
    public var layerCount: Int
    /// Hidden width.
    public var embeddingLength: Int
    /// Query heads.
    public var headCount: Int
    /// Key/value heads.
    public var kvHeadCount: Int
    /// Feed-forward (SwiGLU) width.
    public var feedForwardLength: Int
    /// Vocabulary size.
    public var vocabularySize: Int
    /// Whether the output matrix is the token embedding (no separate `output.weight`).
    public var tiedOutput: Bool

    /// Creates an architecture.
    public init(name: String, layerCount: Int, embeddingLength: Int, headCount: Int, kvHeadCount: Int,
                feedForwardLength: Int, vocabularySize: Int, tiedOutput: Bool = false) {
        self.name = name
        self.layerCount = layerCount
        self.embeddingLength = embeddingLength
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.feedForwardLength = feedForwardLength
        self.vocabularySize = vocabularySize
        self.tiedOutput = tiedOutput
    }

    /// Width of the key (and value) projections.
    public var kvDimension: Int { embeddingLength / max(1, headCount) * kvHeadCount }

    /// Multiply-adds of one row through a block's matrices: q and o (d x d), k and v (d x kv),
    /// gate, up and down (d x feed-forward).
    public var layerMultiplyAdds: Int { embeddingLength * (2 * embeddingLength + 2 * kvDimension + 3 * feedForwardLength) }

    /// Why an architecture is unusable.
    public var problem: String? {
        if layerCount < 1 || embeddingLength < 1 || headCount < 1 || kvHeadCount < 1 || feedForwardLength < 1
            || vocabularySize < 1 {
            return "every size must be positive"
        }
        // Bounds far above any real model, so that the sizes below cannot overflow.
        if layerCount > 100_000 || embeddingLength > 1 << 20 || headCount > 1 << 16 || feedForwardLength > 1 << 22
            || vocabularySize > 1 << 24 {
            return "a size is out of range (at most 100000 layers, width 2^20, 2^16 heads, feed-forward 2^22, vocabulary 2^24)"
        }
        if embeddingLength % headCount != 0 { return "the width \(embeddingLength) is not a multiple of \(headCount) heads" }
        if headCount % kvHeadCount != 0 { return "\(headCount) heads are not a multiple of \(kvHeadCount) KV heads" }
        return nil
    }

    /// Well-known shapes (from the models' published configurations).
    public static let presets: [String: ModelArchitecture] = [
        "llama3-8b": .init(name: "Llama 3 8B", layerCount: 32, embeddingLength: 4096, headCount: 32, kvHeadCount: 8,
                           feedForwardLength: 14336, vocabularySize: 128_256),
        "llama3-70b": .init(name: "Llama 3 70B", layerCount: 80, embeddingLength: 8192, headCount: 64, kvHeadCount: 8,
                            feedForwardLength: 28672, vocabularySize: 128_256),
        "llama3-405b": .init(name: "Llama 3.1 405B", layerCount: 126, embeddingLength: 16384, headCount: 128,
                             kvHeadCount: 8, feedForwardLength: 53248, vocabularySize: 128_256),
        "llama2-7b": .init(name: "Llama 2 7B", layerCount: 32, embeddingLength: 4096, headCount: 32, kvHeadCount: 32,
                           feedForwardLength: 11008, vocabularySize: 32000),
        "llama2-13b": .init(name: "Llama 2 13B", layerCount: 40, embeddingLength: 5120, headCount: 40, kvHeadCount: 40,
                            feedForwardLength: 13824, vocabularySize: 32000),
        "llama2-70b": .init(name: "Llama 2 70B", layerCount: 80, embeddingLength: 8192, headCount: 64, kvHeadCount: 8,
                            feedForwardLength: 28672, vocabularySize: 32000),
        "smollm2-135m": .init(name: "SmolLM2 135M", layerCount: 30, embeddingLength: 576, headCount: 9, kvHeadCount: 3,
                              feedForwardLength: 1536, vocabularySize: 49152, tiedOutput: true),
    ]
}

/// A quantization of a whole model, as llama.cpp's quantizer lays it out (which tensor gets
/// which block type), for sizing models on paper.
public enum ModelQuantization: String, Sendable, CaseIterable {
    case f32, f16, q8_0, q6_k, q5_k_m, q4_k_m, q4_k, q4_1, q4_0

    /// Block types with their bytes per block and elements per block.
    enum Block {
        case f32, f16, q8_0, q6_k, q5_k, q4_k, q4_1, q4_0

        func bytes(_ elements: Int) -> Int {
            let (size, count): (Int, Int)
            switch self {
            case .f32: (size, count) = (4, 1)
            case .f16: (size, count) = (2, 1)
            case .q8_0: (size, count) = (34, 32)
            case .q6_k: (size, count) = (210, 256)
            case .q5_k: (size, count) = (176, 256)
            case .q4_k: (size, count) = (144, 256)
            case .q4_1: (size, count) = (20, 32)
            case .q4_0: (size, count) = (18, 32)
            }
            return (elements + count - 1) / count * size
        }
    }

    /// The block type of a matrix; `role` names the tensor kind, `layer` its block (0..<layers).
    func block(_ role: TensorRole, layer: Int, layers: Int) -> Block {
        // llama.cpp gives attn_v and ffn_down more bits in the first and last eighth of the
        // blocks and every third block between ("use_more_bits").
        let moreBits = layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .q8_0: return .q8_0
        case .q6_k: return .q6_k
        case .q4_k: return role == .output ? .q6_k : .q4_k
        case .q4_1: return role == .output ? .q6_k : .q4_1
        case .q4_0: return role == .output ? .q6_k : .q4_0
        case .q5_k_m, .q4_k_m:
            let base: Block = self == .q5_k_m ? .q5_k : .q4_k
            switch role {
            case .output: return .q6_k
            case .moreBits: return moreBits ? .q6_k : base
            case .embedding, .plain: return base
            }
        }
    }

    /// Kinds of tensors that quantize differently.
    enum TensorRole { case embedding, output, plain, moreBits }
}

/// Why a model shape or a hypothetical worker cannot be planned.
public struct PlanInputError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong.
    public let description: String

    /// An error saying `description`.
    public init(description: String) { self.description = description }
}

extension ModelFacts {
    /// The sizes of `architecture` quantized as `quantization` (llama.cpp's tensor layout; norms in
    /// F32; KV cache in F16).
    public init(architecture a: ModelArchitecture, quantization q: ModelQuantization) throws(PlanInputError) {
        if let problem = a.problem { throw PlanInputError(description: "\(a.name): \(problem)") }
        let d = a.embeddingLength
        let kv = a.kvDimension
        let ffn = a.feedForwardLength
        let n = a.layerCount
        let layers = (0..<n).map { l -> Int in
            let plain = q.block(.plain, layer: l, layers: n)
            let more = q.block(.moreBits, layer: l, layers: n)
            return plain.bytes(d * d) * 2 + plain.bytes(d * kv) + more.bytes(d * kv)  // q, o, k | v
                + plain.bytes(d * ffn) * 2 + more.bytes(ffn * d)  // gate, up | down
                + 2 * d * 4  // attention and feed-forward norms
        }
        let embedding = q.block(.embedding, layer: 0, layers: n).bytes(a.vocabularySize * d)
        let output = d * 4 + (a.tiedOutput ? embedding : q.block(.output, layer: 0, layers: n).bytes(a.vocabularySize * d))
        self.init(layerCount: n, layerBytes: layers, embeddingBytes: embedding, outputBytes: output,
                  kvBytesPerTokenPerLayer: 2 * kv * 2, vocabularySize: a.vocabularySize, embeddingLength: d,
                  layerMultiplyAdds: a.layerMultiplyAdds)
    }

    /// Bytes of the weights as the stages hold them (layers, embedding, output; a tied output
    /// counts the embedding twice, since the first and last stage each need it).
    public var weightBytes: Int { layerBytes.reduce(0, +) + embeddingBytes + outputBytes }
}
