import CaravanCore

/// The standby copies one worker keeps: layer ranges of other stages, held in its layer cache so
/// that it can take them over without a pull. A range from layer 0 includes the token embedding,
/// one ending at the model's last layer the output norm and matrix (what a stage running it loads).
public struct StandbyCopies: Sendable, Equatable {
    /// The ranges, ascending and disjoint (adjacent ones merged).
    public var ranges: [LayerRange]
    /// Bytes of each range (blocks, with the embedding or output it includes), as ``ranges``.
    public var rangeBytes: [UInt64]

    /// Copies of `ranges` weighing `rangeBytes`.
    public init(ranges: [LayerRange], rangeBytes: [UInt64]) {
        self.ranges = ranges
        self.rangeBytes = rangeBytes
    }

    /// Bytes of every range.
    public var bytes: UInt64 { rangeBytes.reduce(0, +) }

    /// Bytes of the ranges `holdings` holds whole (a range counts once all of it is held).
    public func heldBytes(_ holdings: LayerHoldings, layerCount: Int) -> UInt64 {
        zip(ranges, rangeBytes).reduce(0) { sum, pair in
            let (r, bytes) = pair
            let whole = holdings.wholeFile || (r.layers.allSatisfy(holdings.layers.contains)
                && (r.start != 0 || holdings.embedding) && (r.end != layerCount || holdings.output))
            return whole ? sum + bytes : sum
        }
    }
}

/// Where the standby copies of a plan go (``Planner/standby(for:workers:budgets:model:contextTokens:batchSequences:overheadBytes:)``).
public struct StandbyPlacement: Sendable, Equatable {
    /// Copies per worker id; workers that keep none are absent.
    public var copies: [String: StandbyCopies]
    /// Workers of the plan whose loss would still need a pull: no survivor next to them has the
    /// memory to run their layers beside its own, or the standby budget to hold them.
    public var uncovered: [String]

    /// A placement.
    public init(copies: [String: StandbyCopies] = [:], uncovered: [String] = []) {
        self.copies = copies
        self.uncovered = uncovered
    }
}

extension Planner {
    /// Bytes a stage running `layers` needs (weights, KV cache for `contextTokens` ×
    /// `batchSequences`, the embedding for a first stage and the output for a last, overhead), as
    /// the planners count them; saturates at `UInt64.max`.
    public static func stageMemoryBytes(_ layers: LayerRange, model: ModelFacts, contextTokens: Int, batchSequences: Int,
                                        overheadBytes: UInt64 = 32 << 20) -> UInt64 {
        let kvPerLayer = CheckedArithmetic.product(UInt64(max(0, model.kvBytesPerTokenPerLayer)), UInt64(max(1, contextTokens)),
                                                   UInt64(max(1, batchSequences))) ?? .max
        var parts = [overheadBytes]
        for l in layers.layers where l < model.layerCount { parts += [UInt64(max(0, model.layerBytes[l])), kvPerLayer] }
        if layers.start == 0 { parts.append(UInt64(max(0, model.embeddingBytes))) }
        if layers.end == model.layerCount { parts.append(UInt64(max(0, model.outputBytes))) }
        return CheckedArithmetic.sum(parts) ?? .max
    }

    /// Bytes of the model a stage running `layers` loads: its blocks, with the embedding for a
    /// range from layer 0 and the output for one ending at the last layer.
    public static func weightBytes(_ layers: LayerRange, model: ModelFacts) -> UInt64 {
        var bytes: UInt64 = 0
        for l in layers.layers where l < model.layerCount { bytes += UInt64(max(0, model.layerBytes[l])) }
        if layers.start == 0 { bytes += UInt64(max(0, model.embeddingBytes)) }
        if layers.end == model.layerCount { bytes += UInt64(max(0, model.outputBytes)) }
        return bytes
    }

    /// Places standby copies for `plan` so that the loss of any one of its workers can be covered
    /// with no pull.
    ///
    /// After a loss, survivors keep their stages and the lost range goes to the neighbours of the
    /// lost stage (``plan(model:workers:contextTokens:batchSequences:overheadBytes:movement:)``
    /// with a recovery weighing): the first stage's to the second, the last's to the one before
    /// it, a middle one's split at some layer between the two. For each stage this picks that
    /// split as the movement planner would: of the splits each neighbour has the memory to run
    /// (its stage grown by its part, `workers`' memory) and the standby budget to hold (the bytes
    /// of all its copies at most `budgets[id]`; 0 or absent = none), the one that pulls the fewest
    /// bytes the neighbours do not already hold, then the fastest pipeline (the lowest bottleneck
    /// in layer-times over the survivors' speeds). Each neighbour then keeps a copy of its part.
    /// Workers with the whole model file hold every layer already: they pull nothing and need no
    /// budget, but their parts are placed all the same (held from the start), so that the stage
    /// whose layers they would take over mirrors its KV rows to them. Stages are taken in
    /// pipeline order, each seeing the copies placed before it. A pure function.
    ///
    /// Once every copy is held, each stage's split pulls nothing, so the recovery plan after any
    /// single loss pulls nothing either (it moves the fewest bytes first).
    public static func standby(for plan: PipelinePlan, workers: [PlanWorker], budgets: [String: UInt64], model: ModelFacts,
                               contextTokens: Int, batchSequences: Int, overheadBytes: UInt64 = 32 << 20) -> StandbyPlacement {
        let stages = plan.stages
        let n = model.layerCount
        guard stages.count >= 2, model.layerBytes.count == n else { return StandbyPlacement() }
        let byID = Dictionary(workers.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        // What each stage's worker will hold as standby, layer by layer (no worker runs two stages).
        var kept = [Set<Int>](repeating: [], count: stages.count)
        var uncovered: [String] = []
        let outputWork = stages.count > 2 ? model.outputWorkInLayers : 0
        func worker(_ i: Int) -> PlanWorker {
            byID[stages[i].workerID] ?? PlanWorker(id: stages[i].workerID, memoryBytes: 0, speed: 1)
        }
        func speed(_ i: Int) -> Double {
            let s = worker(i).speed
            return s.isFinite && s > 0 ? s : 1e-9
        }
        func time(_ i: Int, _ r: LayerRange) -> Double { (Double(r.count) + (r.end == n ? outputWork : 0)) / speed(i) }
        /// Bytes of the layers `layers` (with the embedding when it holds layer 0, the output when
        /// it holds the last): what a set of copies weighs.
        func bytes(_ layers: Set<Int>) -> UInt64 {
            runs(layers).reduce(0) { $0 + weightBytes($1, model: model) }
        }

        for k in stages.indices {
            let lost = stages[k].layers
            let left = k > 0 ? k - 1 : nil
            let right = k + 1 < stages.count ? k + 1 : nil
            let splits: [Int] = switch (left, right) {
            case (.some, .some): Array(lost.start...lost.end)
            case (.some, nil): [lost.end]
            case (nil, .some): [lost.start]
            case (nil, nil): []
            }
            var best: (pull: UInt64, bottleneck: Double, split: Int)?
            for x in splits {
                // (stage index, its part of the lost range, its grown range)
                var parts: [(Int, LayerRange, LayerRange)] = []
                if let l = left, let part = LayerRange(lost.start, x) {
                    parts.append((l, part, LayerRange(stages[l].layers.start, x)!))
                }
                if let r = right, let part = LayerRange(x, lost.end) {
                    parts.append((r, part, LayerRange(x, stages[r].layers.end)!))
                }
                var pull: UInt64 = 0
                var feasible = true
                for (i, part, grown) in parts {
                    let w = worker(i)
                    guard stageMemoryBytes(grown, model: model, contextTokens: contextTokens, batchSequences: batchSequences,
                                           overheadBytes: overheadBytes) <= w.memoryBytes else {
                        feasible = false
                        break
                    }
                    if w.holdings.wholeFile { continue }
                    guard bytes(kept[i].union(part.layers)) <= budgets[w.id] ?? 0 else {
                        feasible = false
                        break
                    }
                    pull += w.holdings.bytesToPull(part.start, part.end, model: model)
                }
                guard feasible else { continue }
                var bottleneck = 0.0
                for i in stages.indices where i != k {
                    let grown = parts.first { $0.0 == i }?.2 ?? stages[i].layers
                    bottleneck = max(bottleneck, time(i, grown))
                }
                if let b = best, (b.pull, b.bottleneck) <= (pull, bottleneck * (1 + 1e-12)) { continue }
                best = (pull, bottleneck, x)
            }
            guard let chosen = best else {
                uncovered.append(stages[k].workerID)
                continue
            }
            if let l = left { kept[l].formUnion(lost.start..<chosen.split) }
            if let r = right { kept[r].formUnion(chosen.split..<lost.end) }
        }

        var copies: [String: StandbyCopies] = [:]
        for i in stages.indices where !kept[i].isEmpty {
            let ranges = runs(kept[i])
            copies[stages[i].workerID] = StandbyCopies(ranges: ranges, rangeBytes: ranges.map { weightBytes($0, model: model) })
        }
        return StandbyPlacement(copies: copies, uncovered: uncovered)
    }

    /// `layers` as ascending runs of consecutive layers.
    static func runs(_ layers: Set<Int>) -> [LayerRange] {
        var out: [LayerRange] = []
        for l in layers.sorted() {
            if let last = out.last, last.end == l {
                out[out.count - 1] = LayerRange(last.start, l + 1)!
            } else if let r = LayerRange(l, l + 1) {
                out.append(r)
            }
        }
        return out
    }
}
