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

    /// Multiply-adds of one row (one token) through a block's matrices, on average over the
    /// blocks (norms and attention over the context not counted); 0 when unknown (a shape sent by
    /// a client that does not count them).
    public var layerMultiplyAdds: Int

    /// Multiply-adds of one row through the output matrix (vocabulary x width; 0 when unknown).
    public var outputMultiplyAdds: Int {
        guard vocabularySize > 0, embeddingLength > 0 else { return 0 }
        let (product, overflow) = vocabularySize.multipliedReportingOverflow(by: embeddingLength)
        return overflow ? .max : product
    }

    /// The output matrix's work in layers, which the last of several stages runs besides its
    /// blocks (0 for a model without blocks): its multiply-adds over an average block's.
    ///
    /// Multiply-adds, not bytes, because a pipeline's balance matters only when several jobs are
    /// in flight: one sequence alone crosses the stages one after another and takes the sum of
    /// their times however the layers are split. With several jobs, a step carries several rows
    /// and every weight read serves all of them, so a stage's time follows the arithmetic it does
    /// (prefill all the more so, and there the head runs only for the rows that want logits).
    /// Bytes would overweigh a head stored with more bits than the blocks (llama.cpp's quantizer
    /// gives it 6 or 8 bits next to 4-bit blocks): the last stage would get too few layers and
    /// wait for the others. For the blocks the two measures agree (every block has the same
    /// matrices), so only the head needs this. Sampling on the last stage reads each logit a few
    /// times, little next to the vocabulary x width multiply-adds that made them, and is not
    /// counted. Facts without multiply-add counts fall back to bytes.
    public var outputWorkInLayers: Double {
        if layerMultiplyAdds > 0, outputMultiplyAdds > 0 {
            return Double(outputMultiplyAdds) / Double(layerMultiplyAdds)
        }
        let averageLayer = Double(layerBytes.reduce(0, +)) / Double(max(1, layerCount))
        return averageLayer > 0 ? Double(outputBytes) / averageLayer : 0
    }

    /// Creates facts (tests use synthetic ones).
    public init(layerCount: Int, layerBytes: [Int], embeddingBytes: Int, outputBytes: Int, kvBytesPerTokenPerLayer: Int,
                vocabularySize: Int = 0, embeddingLength: Int = 0, contextLength: Int = 0, layerMultiplyAdds: Int = 0) {
        precondition(layerBytes.count == layerCount, "one size per layer")
        self.layerCount = layerCount
        self.layerBytes = layerBytes
        self.embeddingBytes = embeddingBytes
        self.outputBytes = outputBytes
        self.kvBytesPerTokenPerLayer = kvBytesPerTokenPerLayer
        self.vocabularySize = vocabularySize
        self.embeddingLength = embeddingLength
        self.contextLength = contextLength
        self.layerMultiplyAdds = layerMultiplyAdds
    }

    /// Reads the facts of a LLaMA-family model file.
    public init(file: GGUFFile) throws(GGUFError) {
        let config = try LlamaConfiguration(file: file)
        var layers = [Int](repeating: 0, count: config.layerCount)
        var embedding = 0
        var output = 0
        var hasOutput = false
        var blockWeights = 0
        for t in file.tensorInfos {
            if t.name.hasPrefix("blk.") {
                let parts = t.name.split(separator: ".")
                if parts.count > 1, let n = Int(parts[1]), n >= 0, n < config.layerCount {
                    layers[n] += t.byteCount
                    // Matrices only (a norm is one vector); a row takes one multiply-add per weight.
                    if t.dimensions.count >= 2 { blockWeights += t.elementCount }
                }
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
                  embeddingLength: config.embeddingLength, contextLength: config.contextLength,
                  layerMultiplyAdds: blockWeights / max(1, config.layerCount))
    }
}
