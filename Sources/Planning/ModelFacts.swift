import GGUF
import Llama

/// The sizes the planner needs about a model, read from its GGUF tensor index.
public struct ModelFacts: Sendable, Equatable {
    /// Transformer blocks.
    public var layerCount: Int
    /// Weight bytes of each block (`blk.N.*` tensors).
    public var layerBytes: [Int]
    /// Bytes only the first stage needs (token embedding).
    public var embeddingBytes: Int
    /// Bytes only the last stage needs (final norm and output matrix; the token embedding again
    /// when the output is tied to it).
    public var outputBytes: Int
    /// KV cache bytes per token per layer (F16 keys and values).
    public var kvBytesPerTokenPerLayer: Int
    /// Rows of the output matrix.
    public var vocabularySize: Int
    /// Hidden width.
    public var embeddingLength: Int
    /// The model's training context.
    public var contextLength: Int

    /// The output matrix's work in layers: its bytes over an average block's (a decode step reads
    /// every weight once). The last stage runs it besides its layers; 0 for a model without blocks.
    public var outputWorkInLayers: Double {
        let averageLayer = Double(layerBytes.reduce(0, +)) / Double(max(1, layerCount))
        return averageLayer > 0 ? Double(outputBytes) / averageLayer : 0
    }

    /// Creates facts (tests use synthetic ones).
    public init(layerCount: Int, layerBytes: [Int], embeddingBytes: Int, outputBytes: Int, kvBytesPerTokenPerLayer: Int,
                vocabularySize: Int = 0, embeddingLength: Int = 0, contextLength: Int = 0) {
        precondition(layerBytes.count == layerCount, "one size per layer")
        self.layerCount = layerCount
        self.layerBytes = layerBytes
        self.embeddingBytes = embeddingBytes
        self.outputBytes = outputBytes
        self.kvBytesPerTokenPerLayer = kvBytesPerTokenPerLayer
        self.vocabularySize = vocabularySize
        self.embeddingLength = embeddingLength
        self.contextLength = contextLength
    }

    /// Reads the facts of a LLaMA-family model file.
    public init(file: GGUFFile) throws(GGUFError) {
        let config = try LlamaConfiguration(file: file)
        var layers = [Int](repeating: 0, count: config.layerCount)
        var embedding = 0
        var output = 0
        var hasOutput = false
        for t in file.tensorInfos {
            if t.name.hasPrefix("blk.") {
                let parts = t.name.split(separator: ".")
                if parts.count > 1, let n = Int(parts[1]), n >= 0, n < config.layerCount { layers[n] += t.byteCount }
            } else if t.name == "token_embd.weight" {
                embedding += t.byteCount
            } else if t.name == "output.weight" {
                output += t.byteCount
                hasOutput = true
            } else if t.name.hasPrefix("output_norm") {
                output += t.byteCount
            }
        }
        if !hasOutput { output += embedding }
        self.init(layerCount: config.layerCount, layerBytes: layers, embeddingBytes: embedding, outputBytes: output,
                  kvBytesPerTokenPerLayer: 2 * config.kvDimension * 2, vocabularySize: config.vocabularySize,
                  embeddingLength: config.embeddingLength, contextLength: config.contextLength)
    }
}
