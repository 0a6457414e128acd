import CaravanCore
import GGUF

/// The tensors of one transformer block, named as in the GGUF file (`blk.N.*`).
struct LayerWeights: @unchecked Sendable {
    let attnNorm: WeightVector      // [d]
    let wq: WeightMatrix            // [d] -> [heads * headDim]
    let wk: WeightMatrix            // [d] -> [kvHeads * headDim]
    let wv: WeightMatrix            // [d] -> [kvHeads * headDim]
    let wo: WeightMatrix            // [heads * headDim] -> [d]
    let ffnNorm: WeightVector       // [d]
    let gate: WeightMatrix          // [d] -> [ffn]
    let up: WeightMatrix            // [d] -> [ffn]
    let down: WeightMatrix          // [ffn] -> [d]

    init(file: GGUFFile, layer i: Int, config c: LlamaConfiguration) throws(GGUFError) {
        let p = "blk.\(i)."
        let d = c.embeddingLength, qd = c.headCount * c.headDimension, kvd = c.kvDimension, f = c.feedForwardLength
        attnNorm = try WeightVector(file: file, name: p + "attn_norm.weight", count: d)
        wq = try WeightMatrix(file: file, name: p + "attn_q.weight", columns: d, rows: qd)
        wk = try WeightMatrix(file: file, name: p + "attn_k.weight", columns: d, rows: kvd)
        wv = try WeightMatrix(file: file, name: p + "attn_v.weight", columns: d, rows: kvd)
        wo = try WeightMatrix(file: file, name: p + "attn_output.weight", columns: qd, rows: d)
        ffnNorm = try WeightVector(file: file, name: p + "ffn_norm.weight", count: d)
        gate = try WeightMatrix(file: file, name: p + "ffn_gate.weight", columns: d, rows: f)
        up = try WeightMatrix(file: file, name: p + "ffn_up.weight", columns: d, rows: f)
        down = try WeightMatrix(file: file, name: p + "ffn_down.weight", columns: f, rows: d)
    }

    /// Every matrix of the block (for prefetching and byte counts).
    var matrices: [WeightMatrix] { [wq, wk, wv, wo, gate, up, down] }
}

/// The weights one stage needs: its blocks, plus the embedding (first stage) and the final norm
/// and output matrix (last stage). Nothing else of the file is touched.
struct StageWeights: @unchecked Sendable {
    let layers: [LayerWeights]
    let embedding: WeightMatrix?      // token_embd: [d] x vocab rows
    let outputNorm: WeightVector?     // [d]
    let output: WeightMatrix?         // output.weight, or token_embd when tied
    let tiedOutput: WeightMatrix?     // token_embd when it is also the output (tied), else nil
    let ropeFrequencyFactors: [Float]?  // rope_freqs.weight (Llama 3.1 scaling), [ropeDim / 2]

    /// Loads the tensors of `range` from `file`, taking from `kept` (another stage of the same
    /// model: the caller checks that) every block, the embedding and the head it already holds.
    /// Re-planning after a loss or for speed mostly extends a stage by a few blocks; loading and
    /// repacking only those makes the stage ready in a fraction of a full load at a wide model.
    init(file: GGUFFile, config c: LlamaConfiguration, range: LayerRange,
         keeping kept: (weights: StageWeights, range: LayerRange)? = nil) throws(GGUFError) {
        guard range.end <= c.layerCount else {
            throw .corrupt(path: file.path, what: "layer range \(range) exceeds the model's \(c.layerCount) layers")
        }
        var layers: [LayerWeights] = []
        var loaded: [WeightMatrix] = []
        for i in range.layers {
            if let kept, kept.range.layers.contains(i) {
                layers.append(kept.weights.layers[i - kept.range.start])
            } else {
                let layer = try LayerWeights(file: file, layer: i, config: c)
                layers.append(layer)
                loaded += layer.matrices
            }
        }
        self.layers = layers
        let d = c.embeddingLength
        let tokenEmbedding = { () throws(GGUFError) -> WeightMatrix in
            if let e = kept?.weights.embedding ?? kept?.weights.tiedOutput { return e }
            let e = try WeightMatrix(file: file, name: "token_embd.weight", columns: d, rows: c.vocabularySize)
            loaded.append(e)
            return e
        }
        embedding = range.start == 0 ? try tokenEmbedding() : nil
        if range.end == c.layerCount, let keptOutput = kept?.weights.output, let keptNorm = kept?.weights.outputNorm {
            outputNorm = keptNorm
            output = keptOutput
            tiedOutput = kept?.weights.tiedOutput
        } else if range.end == c.layerCount {
            outputNorm = try WeightVector(file: file, name: "output_norm.weight", count: d)
            if file.tensor(named: "output.weight") != nil {
                let o = try WeightMatrix(file: file, name: "output.weight", columns: d, rows: c.vocabularySize)
                loaded.append(o)
                output = o
                tiedOutput = nil
            } else if let e = embedding {
                output = e  // tied embeddings: one matrix (repacked once)
                tiedOutput = e
            } else {
                let e = try tokenEmbedding()  // tied embeddings
                output = e
                tiedOutput = e
            }
        } else {
            outputNorm = nil
            output = nil
            tiedOutput = nil
        }
        if let t = file.tensor(named: "rope_freqs.weight") {
            guard t.type == .f32, t.elementCount == c.ropeDimensions / 2 else {
                throw .badTensorShape(path: file.path, tensor: t.name, expected: [c.ropeDimensions / 2], actual: t.dimensions)
            }
            let p = file.data(of: t).assumingMemoryBound(to: Float.self)
            ropeFrequencyFactors = Array(UnsafeBufferPointer(start: p, count: t.elementCount))
        } else {
            ropeFrequencyFactors = nil
        }
        FilePages.releaseLoaded(file: file, matrices: loaded)
    }

    /// Bytes of weight matrices one decoded token reads: every block's matrices and the output
    /// head (the embedding is only gathered, one row per token).
    var decodeByteCount: Int {
        var n = layers.reduce(0) { $0 + $1.matrices.reduce(0) { $0 + $1.rowBytes * $1.rows } }
        if let o = output { n += o.rowBytes * o.rows }
        return n
    }

    /// Bytes of weights this stage maps (what it keeps resident while running).
    var byteCount: Int {
        var n = layers.reduce(0) { $0 + $1.matrices.reduce(0) { $0 + $1.rowBytes * $1.rows } }
        if let e = embedding { n += e.rowBytes * e.rows }
        if let o = output, embedding == nil || o.data != embedding!.data { n += o.rowBytes * o.rows }
        return n
    }
}
