import CaravanCore

/// What a stage kept of one sequence across a re-plan, and what it will recompute when the
/// sequence is replayed (see ``LlamaStage/continueSequences(_:from:)``).
public struct ContinuedSequence: Sendable, Equatable, CustomStringConvertible {
    /// The sequence.
    public let sequence: SequenceID
    /// Positions the coordinator counts as committed (computed by every stage of the old plan).
    public let committed: Int
    /// The layers (model numbering) whose keys and values were kept; nil when nothing was.
    public let keptLayers: LayerRange?
    /// Positions of ``keptLayers`` kept (at most ``committed``).
    public let keptPositions: Int
    /// Positions the old stage had beyond ``committed`` (a step that did not complete
    /// everywhere), cut off.
    public let cutPositions: Int
    /// Why less than every committed position of the kept layers was kept (nil when nothing is
    /// missing): the stage falls back to recomputing those.
    public let fallback: String?
    /// Layer-positions the stage recomputes when the committed positions are replayed from
    /// position 0: its layers times the committed positions, less the kept ones.
    public let recompute: Int
    /// The layers (model numbering) whose keys and values came from rows their owner mirrored to
    /// this worker; nil when none did.
    public var mirroredLayers: LayerRange? = nil
    /// Positions every layer of the stage holds (kept and mirrored), at most ``committed``: the
    /// sequence can resume there with nothing recomputed on this stage.
    public var heldPositions = 0

    public var description: String {
        var s = "\(sequence): "
        if let keptLayers {
            s += "kept layers \(keptLayers) for \(keptPositions) of \(committed) positions"
        } else {
            s += "nothing kept of \(committed) positions"
        }
        if let mirroredLayers { s += ", mirrored layers \(mirroredLayers)" }
        s += ", holds every layer for \(heldPositions)"
        if cutPositions > 0 { s += ", cut \(cutPositions) uncommitted" }
        s += heldPositions >= committed ? ", resumes with nothing to recompute" : ", a replay from 0 recomputes \(recompute) layer-positions"
        if let fallback { s += " (full recompute: \(fallback))" }
        return s
    }
}

extension LlamaStage {
    /// Element type of the outputs this stage sends on (and keeps); changing it drops the rows
    /// kept in the other type.
    public var outputPrecision: OutputPrecision {
        get { kept.precision }
        set { kept.setPrecision(newValue) }
    }

    /// Most positions of kept outputs over all sequences (the plan's context times its sequences;
    /// beyond it the largest sequences not in the current step are dropped, and lose their
    /// partial replay on this stage).
    public var keptOutputLimit: Int {
        get { kept.limit }
        set { kept.limit = max(0, newValue) }
    }

    /// Bytes allocated for kept outputs now.
    public var keptOutputBytes: Int { kept.byteCount }

    /// Bytes the kept outputs take at most: ``keptOutputLimit`` rows of the hidden size in
    /// ``outputPrecision`` (0 for a last stage, which keeps none).
    public var keptOutputBudgetBytes: Int { isLast ? 0 : kept.limit * configuration.embeddingLength * kept.precision.byteCount }

    /// Positions of `sequence` whose outputs are kept.
    public func keptOutputLength(of sequence: SequenceID) -> Int { kept.length(of: sequence) }

    /// Positions of `sequence` the layers this stage kept from a previous plan still hold beyond
    /// its other layers (0 when the sequence is not resumed).
    public func resumedLength(of sequence: SequenceID) -> Int { resumes[sequence] ?? 0 }

    /// Takes over, for each sequence of `committed` (sequence → positions the coordinator counts
    /// as computed by every stage of the old plan), what `old` (the stage of the previous plan on
    /// this worker, or this very stage when its layers did not change; nil on a worker new to the
    /// sequences) held: the keys and values of the layers both run, cut back to the committed
    /// positions, and the outputs `old` sent on. Everything else `old` held is dropped.
    ///
    /// When the sequence is replayed from position 0 afterwards, rows below the kept positions
    /// skip the kept layers: layers before them are computed from the step's input, layers after
    /// them start from the kept outputs, and the kept outputs go on to the next stage. That is
    /// exact: the hidden states and caches equal those of a full replay bit for bit. Where the
    /// kept state does not fit (another model or context, no layer in common, outputs of another
    /// layer than this stage needs, an unknown sequence) the stage recomputes its whole range for
    /// the sequence; the result says which.
    ///
    /// The layers this stage takes over beyond the kept ones are filled from `mirror` (the rows
    /// their owner streamed to this worker, of the old plan) where it holds them: then every
    /// layer holds the positions both hold (``ContinuedSequence/heldPositions``), and the sequence
    /// can resume there instead of being replayed (rows from an earlier position recompute what
    /// they reach, as before).
    @discardableResult
    public func continueSequences(_ committed: [SequenceID: Int], from old: LlamaStage?,
                                  mirror: KVMirror? = nil) -> [ContinuedSequence] {
        let committed = committed.filter { $0.value > 0 }.mapValues { min($0, contextLimit) }
        let order = committed.keys.sorted()
        resumes = [:]
        keptLayers = 0..<0
        replayWindows = committed
        let count = layers.count
        func nothing(_ id: SequenceID, _ why: String, cut: Int = 0) -> ContinuedSequence {
            ContinuedSequence(sequence: id, committed: committed[id]!, keptLayers: nil, keptPositions: 0, cutPositions: cut,
                              fallback: why, recompute: count * committed[id]!)
        }
        guard let old else {
            for id in sequences where committed[id] == nil { removeSequence(id) }
            return order.map { nothing($0, "this worker did not run the sequence") }
        }
        let lo = max(layers.start, old.layers.start), hi = min(layers.end, old.layers.end)
        // The hidden state after the kept layers is the old stage's output only when they end
        // where the old range ended; a last stage whose kept layers end the model needs none.
        let needsOutputs = !(isLast && hi == layers.end)
        var mismatch: String?
        if old.configuration != configuration {
            mismatch = "another model"
        } else if old.contextLimit != contextLimit {
            mismatch = "the context changed from \(old.contextLimit) to \(contextLimit)"
        } else if lo >= hi {
            mismatch = "no layer in common with the old range \(old.layers)"
        } else if needsOutputs && hi != old.layers.end {
            mismatch = "the kept outputs are those after layer \(old.layers.end - 1), this stage needs those after layer \(hi - 1)"
        }
        if let mismatch {
            let cuts = Dictionary(uniqueKeysWithValues: order.map { ($0, max(0, old.cachedLength(of: $0) - committed[$0]!)) })
            for id in old.sequences { old.removeSequence(id) }
            if old !== self { for id in sequences { removeSequence(id) } }
            replayWindows = committed
            return order.map { nothing($0, mismatch, cut: cuts[$0]!) }
        }
        let keptRange = LayerRange(lo, hi)!
        var results: [ContinuedSequence] = []
        if old === self {
            for id in sequences where committed[id] == nil { removeSequence(id) }
        } else {
            for id in sequences { removeSequence(id) }
        }
        let layerMap: [Int?] = (0..<count).map { local in
            let g = layers.start + local
            return g >= lo && g < hi ? g - old.layers.start : nil
        }
        let whole = lo == layers.start && hi == layers.end
        // Local layers the old stage did not run (what a mirror may fill).
        let newLocals = layerMap.indices.filter { layerMap[$0] == nil }
        for id in order {
            let c = committed[id]!
            // Positions every old layer holds (a sequence still resuming there counts only those).
            let held = old.cachedLength(of: id)
            guard held > 0 else {
                results.append(nothing(id, "the old stage held no positions of it"))
                continue
            }
            // Keys and values of the kept layers, and positions whose outputs are kept too (a
            // replay below them skips the kept layers).
            let kv = min(held, c)
            var m = kv
            if needsOutputs {
                if old !== self {
                    old.kept.move(id, to: kept, length: m, protected: Set(resumes.keys))
                } else {
                    kept.truncate(id, to: m)
                }
                m = min(m, kept.length(of: id))
            }
            // The layers taken over beyond the kept ones, filled from the mirror where it holds them.
            let mirrored = whole || old === self ? 0 : min(kv, self.mirrored(id, locals: newLocals, in: mirror))
            guard m > 0 || mirrored > 0 else {
                if old === self { removeSequence(id) } else { old.removeSequence(id) }
                replayWindows[id] = c
                results.append(nothing(id, "no outputs kept for it", cut: max(0, held - c)))
                continue
            }
            if old === self {
                cache.truncate(id, to: m)
                kept.truncate(id, to: m)
            } else {
                cache.adopt(id, from: old.cache, layerMap: layerMap, length: max(m, mirrored))
            }
            if mirrored > 0, let mirror { fill(id, locals: newLocals, from: mirror, count: mirrored) }
            // Layers this stage did not run before hold nothing yet, or what the mirror held.
            let every = whole ? m : mirrored
            cache.sequence(id).length = every
            if m > 0 { resumes[id] = m }
            var result = ContinuedSequence(
                sequence: id, committed: c, keptLayers: keptRange, keptPositions: m, cutPositions: max(0, held - c),
                fallback: max(m, every) < c ? "kept \(max(m, every)) of \(c) committed positions" : nil,
                recompute: count * c - keptRange.count * m)
            result.heldPositions = every
            if mirrored > 0 { result.mirroredLayers = LayerRange(layers.start + newLocals.first!, layers.start + newLocals.last! + 1) }
            results.append(result)
        }
        keptLayers = (lo - layers.start)..<(hi - layers.start)
        if old !== self { for id in old.sequences { old.removeSequence(id) } }
        replayWindows = committed
        return results
    }

    /// Runs the stage's layers over a batch where some rows (of sequences in `keptUntil`, below
    /// its value) are replayed positions this stage kept: layers before ``keptLayers`` run over
    /// every row; the kept layers only over the other rows (the kept rows' hidden states become
    /// the outputs kept for them); the layers after over every row again.
    func runResumed(entries: [StageEntry], sequences: [KVCache.Sequence], keptUntil: [SequenceID: Int]) {
        let d = configuration.embeddingLength
        let x = scratch.x.pointer
        let k = keptLayers
        runLayers(0..<k.lowerBound, entries: entries, sequences: sequences)
        // The rows that run the kept layers, moved to the front of `x` in order (row i to j <= i).
        let active = entries.indices.filter { entries[$0].position >= (keptUntil[entries[$0].sequence] ?? 0) }
        for (j, i) in active.enumerated() where i != j { (x + j * d).update(from: x + i * d, count: d) }
        runLayers(k, entries: active.map { entries[$0] }, sequences: active.map { sequences[$0] })
        // Back to their rows, last first (row j to i >= j), then the kept rows' outputs.
        for (j, i) in active.enumerated().reversed() where i != j { (x + i * d).update(from: x + j * d, count: d) }
        guard k.upperBound < weights.layers.count || !isLast else { return }
        var next = 0
        for (i, e) in entries.enumerated() {
            if next < active.count && active[next] == i {
                next += 1
                continue
            }
            kept.read(e.sequence, position: e.position, into: x + i * d)
        }
        runLayers(k.upperBound..<weights.layers.count, entries: entries, sequences: sequences)
    }

    /// Keeps the hidden outputs of a step (`x`, one row per entry) of every sequence in it.
    func keepOutputs(_ entries: [StageEntry], x: UnsafeMutablePointer<Float>, sequences: Set<SequenceID>) {
        let d = configuration.embeddingLength
        let protected = sequences.union(resumes.keys)
        var start = 0
        while start < entries.count {
            var end = start + 1
            while end < entries.count && entries[end].sequence == entries[start].sequence { end += 1 }
            let e = entries[start]
            kept.store(e.sequence, position: e.position, count: end - start, values: x + start * d, protected: protected,
                       preserving: resumes[e.sequence] ?? 0)
            // A sequence still being replayed whose kept rows did not fit any more goes on without
            // them: its positions from the cache's length on are computed in every layer.
            if let m = resumes[e.sequence], kept.length(of: e.sequence) < m { resumes[e.sequence] = nil }
            start = end
        }
    }
}
