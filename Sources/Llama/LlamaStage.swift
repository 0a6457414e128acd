import CKernels
import CaravanCore
import GGUF

/// Runs layers `[start, end)` of a LLaMA model over batches of sequences: the unit a worker serves.
///
/// The first stage embeds tokens; the last applies the final norm and the output matrix. The stage
/// keeps a KV cache for its own layers only. Not thread-safe: use one stage from one task at a time
/// (its kernels use `runner`'s threads internally).
public final class LlamaStage: @unchecked Sendable {
    /// The model's hyper-parameters.
    public let configuration: LlamaConfiguration
    /// The layers this stage runs.
    public let layers: LayerRange
    /// Maximum positions per sequence.
    public let contextLimit: Int
    /// The model file (kept open: weights are read from its mapping).
    public let file: GGUFFile

    let weights: StageWeights
    let cache: KVCache
    let rope: RotaryEmbedding
    let runner: any ParallelRunner
    let scratch: StageScratch
    /// The outputs this stage sent on, per sequence (not kept by a last stage): what a re-plan
    /// needs to recompute only the layers that were lost (see ``continueSequences(_:from:)``).
    let kept: KeptOutputs
    /// Sequences continuing from a previous plan: positions `[0, length)` of layers
    /// ``keptLayers`` are in the cache; the stage's other layers hold only the cache's length.
    var resumes: [SequenceID: Int] = [:]
    /// Local layers whose KV the resumed sequences kept.
    var keptLayers: Range<Int> = 0..<0
    /// Per sequence, the positions the coordinator counted as committed before a re-plan: rows
    /// below it are a replay, and the layers computed for them are counted.
    var replayWindows: [SequenceID: Int] = [:]
    /// Layer-positions recomputed for replayed rows since the stage was made (a layer run for one
    /// row of a sequence below its committed length after a re-plan).
    public private(set) var replayedLayerPositions = 0

    /// Whether this stage embeds tokens.
    public var isFirst: Bool { layers.start == 0 }
    /// Whether this stage produces logits.
    public var isLast: Bool { layers.end == configuration.layerCount }
    /// Bytes of model weights this stage uses.
    public var weightBytes: Int { weights.byteCount }
    /// Bytes of weight matrices one decoded token reads (blocks and output head, not the
    /// embedding): with the seconds per token, the bandwidth decode reaches.
    public var decodeWeightBytes: Int { weights.decodeByteCount }
    /// Bytes currently allocated for KV caches.
    public var cacheBytes: Int { cache.byteCount }
    /// Bytes the KV caches of `sequences` full-context sequences take: F16 keys and values,
    /// `[sequences][layers][contextLimit][kvDimension]` each.
    public func cacheBudgetBytes(sequences: Int) -> Int {
        2 * 2 * sequences * layers.count * contextLimit * configuration.kvDimension
    }

    /// Loads the tensors of `layers` from `file`.
    /// - Parameters:
    ///   - contextLimit: maximum positions per sequence (defaults to the model's training context).
    ///   - runner: threads for the kernels.
    ///   - kept: a stage of the same model (the caller checks: same file contents) whose blocks,
    ///     embedding and head are taken instead of loaded again; its caches are not.
    public init(file: GGUFFile, layers: LayerRange? = nil, contextLimit: Int? = nil,
                runner: any ParallelRunner = SerialRunner(), keeping kept: LlamaStage? = nil) throws(GGUFError) {
        let config = try LlamaConfiguration(file: file)
        let range = layers ?? LayerRange(0, config.layerCount)!
        self.configuration = config
        self.layers = range
        self.file = file
        self.contextLimit = max(1, min(contextLimit ?? config.contextLength, config.contextLength))
        let keptWeights = kept.flatMap { k in k.configuration == config ? (weights: k.weights, range: k.layers) : nil }
        self.weights = try StageWeights(file: file, config: config, range: range, keeping: keptWeights)
        self.cache = KVCache(layerCount: range.count, kvDimension: config.kvDimension, contextLimit: self.contextLimit)
        self.rope = RotaryEmbedding(headDimension: config.headDimension, dimensions: config.ropeDimensions,
                                    base: config.ropeBase, linearScale: config.ropeLinearScale,
                                    frequencyFactors: weights.ropeFrequencyFactors)
        self.runner = runner
        self.scratch = StageScratch(config: config, threads: runner.width, contextLimit: self.contextLimit)
        self.kept = KeptOutputs(width: config.embeddingLength, contextLimit: self.contextLimit,
                                limit: self.contextLimit * Self.defaultKeptSequences)
    }

    // MARK: Sequences

    /// Number of cached positions of `sequence`.
    public func cachedLength(of sequence: SequenceID) -> Int { cache.length(of: sequence) }
    /// Frees the cache of `sequence` and the outputs kept for it.
    public func removeSequence(_ sequence: SequenceID) {
        cache.remove(sequence)
        kept.remove(sequence)
        resumes[sequence] = nil
        replayWindows[sequence] = nil
    }
    /// Keeps positions `[0, length)` of `sequence` (for reuse of a common prefix or rollback): in
    /// its KV cache (every layer, kept ones included) and in its kept outputs.
    public func truncateSequence(_ sequence: SequenceID, to length: Int) {
        cache.truncate(sequence, to: length)
        kept.truncate(sequence, to: length)
        if let m = resumes[sequence] { resumes[sequence] = min(m, max(0, length)) }
    }
    /// Sequences with a cache.
    public var sequences: [SequenceID] { Array(cache.sequences.keys) }

    // MARK: Forward

    /// Runs the stage's layers over `batch`.
    public func forward(_ batch: StageBatch) throws(StageError) -> StageOutput {
        let n = batch.entries.count
        try validate(batch)
        let c = configuration
        let d = c.embeddingLength
        scratch.reserve(rows: n, tile: min(n, Self.rowTile))

        // Prepare each sequence's cache: rewind to the batch's first position, make room.
        var firstPosition: [SequenceID: Int] = [:]
        var lastPosition: [SequenceID: Int] = [:]
        for e in batch.entries {
            if firstPosition[e.sequence] == nil { firstPosition[e.sequence] = e.position }
            lastPosition[e.sequence] = e.position
        }
        var seqs: [KVCache.Sequence] = []
        seqs.reserveCapacity(n)
        for (id, first) in firstPosition {
            let s = cache.sequence(id)
            s.length = min(s.length, first)
            s.reserve(lastPosition[id]! + 1, layers: cache.layerCount, kvDim: c.kvDimension, limit: contextLimit,
                      preserving: resumes[id])
        }
        for e in batch.entries { seqs.append(cache.sequence(e.sequence)) }

        // Input rows: x [n, d].
        let x = scratch.x.pointer
        if let emb = weights.embedding {
            for (i, e) in batch.entries.enumerated() { emb.dequantizeRow(Int(e.token!), into: x + i * d) }
        } else {
            batch.hidden!.withUnsafeBufferPointer { x.update(from: $0.baseAddress!, count: n * d) }
        }

        // Rows of sequences continuing from a previous plan, below what they kept: layers
        // `keptLayers` are skipped for them (their keys and values are cached, and the hidden
        // state after those layers is the output kept then). A row that wants logits is computed
        // whole, and so is every later row of its sequence.
        var keptUntil: [SequenceID: Int] = [:]
        for id in firstPosition.keys { if let m = resumes[id] { keptUntil[id] = m } }
        for e in batch.entries where e.wantsLogits {
            if let m = keptUntil[e.sequence], e.position < m { keptUntil[e.sequence] = e.position }
        }
        let all = 0..<weights.layers.count
        if batch.entries.contains(where: { e in keptUntil[e.sequence].map { e.position < $0 } ?? false }) {
            runResumed(entries: batch.entries, sequences: seqs, keptUntil: keptUntil)
        } else {
            runLayers(all, entries: batch.entries, sequences: seqs)
        }
        for (id, last) in lastPosition {
            cache.sequence(id).length = last + 1
            if let m = resumes[id], last + 1 >= m { resumes[id] = nil }  // every layer is complete now
            if let w = replayWindows[id], last + 1 >= w { replayWindows[id] = nil }
        }
        if !isLast { keepOutputs(batch.entries, x: x, sequences: Set(firstPosition.keys)) }

        guard isLast, let outNorm = weights.outputNorm, let output = weights.output else {
            return .hidden(values: Array(UnsafeBufferPointer(start: x, count: n * d)), rows: n, width: d)
        }
        let wanted = batch.entries.indices.filter { batch.entries[$0].wantsLogits }
        let xn = scratch.xn.pointer
        let vocab = output.rows
        var logits = [Float](repeating: 0, count: wanted.count * vocab)
        var lo = 0
        while lo < wanted.count {  // in tiles of rows too
            let hi = min(wanted.count, lo + Self.rowTile)
            for j in lo..<hi {
                ck_rmsnorm_f32(x + wanted[j] * d, outNorm.values, xn + (j - lo) * d, Int64(d), c.rmsEpsilon)
            }
            scratch.reserveQuantized(bytes: (hi - lo) * output.activationRowBytes)
            output.quantizeActivations(xn, stride: d, count: hi - lo, into: scratch.quantized.raw, runner: runner)
            logits.withUnsafeMutableBufferPointer { out in
                output.multiply(quantized: scratch.quantized.raw, count: hi - lo, into: out.baseAddress! + lo * vocab,
                                outStride: vocab, runner: runner)
            }
            lo = hi
        }
        return .logits(values: logits, entryIndices: wanted, vocabulary: vocab)
    }

    /// Runs layers `locals` over every row of `entries` (hidden states in `scratch.x`, row `i` at
    /// `i * width`), counting the replayed rows. Layer by layer; inside a layer, rows in tiles of
    /// `rowTile` in batch order (a row's attention reads the keys of earlier rows of its sequence,
    /// written by earlier tiles), so the work buffers hold one tile, not the whole batch. Results
    /// do not depend on the tiling (the kernels are batch-invariant).
    func runLayers(_ locals: Range<Int>, entries: [StageEntry], sequences: [KVCache.Sequence]) {
        let n = entries.count
        guard !locals.isEmpty, n > 0 else { return }
        var tiles: [Range<Int>] = []
        var lo = 0
        while lo < n {
            tiles.append(lo..<min(n, lo + Self.rowTile))
            lo += Self.rowTile
        }
        let runs = tiles.map { attentionRuns(entries, rows: $0) }
        for local in locals {
            for (t, rows) in tiles.enumerated() {
                runBlock(weights.layers[local], local: local, entries: entries, sequences: sequences, rows: rows, runs: runs[t])
            }
        }
        if !replayWindows.isEmpty {
            let replayed = entries.reduce(0) { sum, e in sum + (e.position < (replayWindows[e.sequence] ?? 0) ? 1 : 0) }
            replayedLayerPositions += replayed * locals.count
        }
    }

    /// Cuts `rows` of a batch into runs of at most ``attentionRows`` consecutive rows of one
    /// sequence (consecutive positions): the rows whose queries share the cached keys.
    private func attentionRuns(_ entries: [StageEntry], rows: Range<Int>) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var start = rows.lowerBound
        for i in rows where i > start {
            if entries[i].sequence != entries[start].sequence || i - start == Self.attentionRows {
                runs.append(start..<i)
                start = i
            }
        }
        if start < rows.upperBound { runs.append(start..<rows.upperBound) }
        return runs
    }

    /// One transformer block over a tile of rows `rows` of the batch (`runs`: their attention
    /// runs), updating their hidden states in `scratch.x` in place. Tile buffers are indexed from
    /// the tile's first row.
    private func runBlock(_ lw: LayerWeights, local: Int, entries allEntries: [StageEntry],
                          sequences allSequences: [KVCache.Sequence], rows: Range<Int>, runs: [Range<Int>]) {
        let c = configuration
        let first = rows.lowerBound
        let n = rows.count
        let x = scratch.x.pointer + first * c.embeddingLength
        let d = c.embeddingLength, hd = c.headDimension, qd = c.headCount * hd, kvd = c.kvDimension
        let f = c.feedForwardLength
        let xn = scratch.xn.pointer
        let q = scratch.q.pointer, k = scratch.k.pointer, v = scratch.v.pointer
        let att = scratch.attention.pointer, tmp = scratch.tmp.pointer
        let gate = scratch.gate.pointer, up = scratch.up.pointer

        // Attention: norm, projections. Row-wise steps run across the threads too (a row's bits
        // do not depend on which thread computes it); one row runs on the caller.
        runner.forEachChunk(of: n) { range, _ in
            for i in range { ck_rmsnorm_f32(x + i * d, lw.attnNorm.values, xn + i * d, Int64(d), c.rmsEpsilon) }
        }
        project([(lw.wq, q), (lw.wk, k), (lw.wv, v)], input: xn, count: n)

        // RoPE, then append keys and values to the cache as F16.
        let ropeFloats = scratch.ropeFloatsPerSlot, halfCount = scratch.halvesPerSlot
        runner.forEachChunk(of: n) { range, slot in
            let cosT = scratch.rope.pointer + slot * 2 * ropeFloats, sinT = cosT + ropeFloats
            let halves = scratch.halves.pointer + slot * halfCount
            for i in range {
                let e = allEntries[first + i]
                rope.table(position: e.position, cos: cosT, sin: sinT)
                rope.rotate(q + i * qd, heads: c.headCount, cos: cosT, sin: sinT)
                rope.rotate(k + i * kvd, heads: c.kvHeadCount, cos: cosT, sin: sinT)
                // llama.cpp multiplies F16 keys with queries converted to F16: round them the same way.
                roundToHalf(q + i * qd, count: qd, scratch: halves)
                let s = allSequences[first + i]
                ck_f32_to_f16(k + i * kvd, s.keys[local] + e.position * kvd, Int64(kvd))
                ck_f32_to_f16(v + i * kvd, s.values[local] + e.position * kvd, Int64(kvd))
            }
        }

        // Scaled dot-product attention, causal by position. One work item = one run of rows of a
        // sequence x the query heads of one KV head: the kernel converts each block of cached keys
        // and values once for all of the item's queries. Scores, softmax, then F16 values times
        // probabilities rounded to F16 (as llama.cpp); each query's bits are those of
        // ck_attention_f16 alone.
        let scale = 1 / Float(hd).squareRoot()
        let group = c.groupSize, kvHeads = c.kvHeadCount
        let scoreStride = contextLimit, slotFloats = scratch.scoresPerSlot
        let scores = scratch.scores.pointer
        runner.forEachChunk(of: runs.count * kvHeads) { range, slot in
            let sc = scores + slot * slotFloats
            withUnsafeTemporaryAllocation(of: ck_attention_query.self, capacity: Self.attentionRows * group) { qs in
                for item in range {
                    let run = runs[item / kvHeads], g = item % kvHeads
                    var nq = 0
                    for row in run {
                        let i = row - first, count = Int64(allEntries[row].position + 1)
                        for h in (g * group)..<((g + 1) * group) {
                            qs[nq] = ck_attention_query(q: q + i * qd + h * hd, out: att + i * qd + h * hd, count: count)
                            nq += 1
                        }
                    }
                    let s = allSequences[run.lowerBound]
                    let kvOffset = g * hd
                    ck_attention_f16_multi(qs.baseAddress!, Int64(nq), s.keys[local] + kvOffset, s.values[local] + kvOffset,
                                           Int64(kvd), Int64(hd), scale, sc, Int64(scoreStride))
                }
            }
        }
        project([(lw.wo, tmp)], input: att, count: n)

        // Residual, then the feed-forward (SwiGLU) with its norm; residual again.
        runner.forEachChunk(of: n) { range, _ in
            for i in range {
                let xi = x + i * d, ti = tmp + i * d
                for j in 0..<d { xi[j] += ti[j] }
                ck_rmsnorm_f32(xi, lw.ffnNorm.values, xn + i * d, Int64(d), c.rmsEpsilon)
            }
        }
        project([(lw.gate, gate), (lw.up, up)], input: xn, count: n)
        runner.forEachChunk(of: n) { range, _ in
            for i in range { ck_silu_mul_f32(gate + i * f, up + i * f, gate + i * f, Int64(f)) }
        }
        project([(lw.down, tmp)], input: gate, count: n)
        runner.forEachChunk(of: n) { range, _ in
            for i in range {
                let xi = x + i * d, ti = tmp + i * d
                for j in 0..<d { xi[j] += ti[j] }
            }
        }
    }

    /// Multiplies `count` input rows (contiguous, `matrix.columns` wide) by each matrix, quantizing
    /// the input once per activation type; consecutive matrices of one activation type share one
    /// parallel pass.
    private func project(_ targets: [(WeightMatrix, UnsafeMutablePointer<Float>)], input: UnsafeMutablePointer<Float>,
                         count: Int) {
        var start = 0
        while start < targets.count {
            let type = targets[start].0.activationType
            var end = start + 1
            while end < targets.count && targets[end].0.activationType == type { end += 1 }
            let w = targets[start].0
            scratch.reserveQuantized(bytes: count * w.activationRowBytes)
            w.quantizeActivations(input, stride: w.columns, count: count, into: scratch.quantized.raw, runner: runner)
            if end - start == 1 {
                w.multiply(quantized: scratch.quantized.raw, count: count, into: targets[start].1, outStride: w.rows,
                           runner: runner)
            } else {
                WeightMatrix.multiply(Array(targets[start..<end]), quantized: scratch.quantized.raw, count: count,
                                      runner: runner)
            }
            start = end
        }
    }

    /// Rounds `count` floats to the nearest F16 value, in place (`scratch` holds `count` halfs).
    private func roundToHalf(_ p: UnsafeMutablePointer<Float>, count: Int, scratch: UnsafeMutablePointer<UInt16>) {
        ck_f32_to_f16(p, scratch, Int64(count))
        ck_f16_to_f32(scratch, p, Int64(count))
    }

    /// Checks a batch without changing any state.
    private func validate(_ batch: StageBatch) throws(StageError) {
        let n = batch.entries.count
        guard n > 0 else { throw .emptyBatch }
        guard n <= Self.maxBatchRows else { throw .batchTooLarge(rows: n, limit: Self.maxBatchRows) }
        let c = configuration
        if isFirst {
            for (i, e) in batch.entries.enumerated() {
                guard let t = e.token else { throw .missingToken(row: i) }
                guard t >= 0, Int(t) < c.vocabularySize else {
                    throw .tokenOutOfRange(row: i, token: t, vocabulary: c.vocabularySize)
                }
            }
        } else {
            let count = batch.hidden?.count ?? 0
            guard count == n * c.embeddingLength else { throw .hiddenShape(expected: n * c.embeddingLength, actual: count) }
        }
        var next: [SequenceID: Int] = [:]
        for (i, e) in batch.entries.enumerated() {
            guard e.position >= 0, e.position < contextLimit else {
                throw .contextFull(sequence: e.sequence, position: e.position, limit: contextLimit)
            }
            if let expected = next[e.sequence] {
                guard e.position == expected else { throw .positionOrder(sequence: e.sequence, row: i) }
            } else {
                let cached = cache.length(of: e.sequence)
                guard e.position <= cached else {
                    throw .positionGap(sequence: e.sequence, position: e.position, cached: cached)
                }
            }
            next[e.sequence] = e.position + 1
        }
    }

    /// Sequences whose outputs a stage keeps by default (``keptOutputLimit`` is this many
    /// full contexts).
    static let defaultKeptSequences = 8

    /// The most rows one forward step takes.
    public static let maxBatchRows = 4096
    /// Rows a layer processes at once: the work buffers are sized for this many rows (plus the
    /// hidden states of the whole batch), whatever the batch. 64 activations per weight pass
    /// keep the matrix kernels compute-bound.
    static let rowTile = 64
    /// Consecutive rows of a sequence whose queries share one pass over the cached keys.
    static let attentionRows = 4
}

/// Work buffers of a stage: the hidden states of the largest batch seen so far, the rest for
/// one tile of rows (``LlamaStage/rowTile``).
final class StageScratch {
    let config: LlamaConfiguration
    let x = AlignedBuffer<Float>(capacity: 1)
    let xn = AlignedBuffer<Float>(capacity: 1)
    let q = AlignedBuffer<Float>(capacity: 1)
    let k = AlignedBuffer<Float>(capacity: 1)
    let v = AlignedBuffer<Float>(capacity: 1)
    let attention = AlignedBuffer<Float>(capacity: 1)
    let tmp = AlignedBuffer<Float>(capacity: 1)
    let gate = AlignedBuffer<Float>(capacity: 1)
    let up = AlignedBuffer<Float>(capacity: 1)
    let quantized = AlignedBuffer<UInt8>(capacity: 1)
    /// Attention scores: per thread, one row of `contextLimit` per query of a work item.
    let scores: AlignedBuffer<Float>
    let scoresPerSlot: Int
    /// Per thread, F16 scratch for rounding one row of queries.
    let halves: AlignedBuffer<UInt16>
    let halvesPerSlot: Int
    /// Per thread, one position's RoPE table: `ropeFloatsPerSlot` cosines, then as many sines.
    let rope: AlignedBuffer<Float>
    let ropeFloatsPerSlot: Int

    init(config: LlamaConfiguration, threads: Int, contextLimit: Int) {
        self.config = config
        scoresPerSlot = LlamaStage.attentionRows * config.groupSize * contextLimit
        scores = AlignedBuffer(capacity: threads * scoresPerSlot)
        // Slots a cache line apart (no false sharing between threads).
        halvesPerSlot = (config.headCount * config.headDimension + 31) / 32 * 32
        halves = AlignedBuffer(capacity: threads * halvesPerSlot)
        ropeFloatsPerSlot = (config.headDimension + 15) / 16 * 16
        rope = AlignedBuffer(capacity: threads * 2 * ropeFloatsPerSlot)
    }

    func reserve(rows: Int, tile n: Int) {
        let c = config
        let qd = c.headCount * c.headDimension
        x.reserve(rows * c.embeddingLength)
        xn.reserve(n * max(c.embeddingLength, qd))
        q.reserve(n * qd)
        k.reserve(n * c.kvDimension)
        v.reserve(n * c.kvDimension)
        attention.reserve(n * qd)
        tmp.reserve(n * c.embeddingLength)
        gate.reserve(n * c.feedForwardLength)
        up.reserve(n * c.feedForwardLength)
    }

    func reserveQuantized(bytes: Int) { quantized.reserve(bytes) }
}
