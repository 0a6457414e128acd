import CaravanCore

/// What a worker holds of the model without pulling it over the network: the whole file on its
/// disk, or the layers of stages it loaded before (their bytes stay in its layer cache).
public struct LayerHoldings: Sendable, Equatable {
    /// It has the model file: every byte is local.
    public var wholeFile: Bool
    /// Blocks it holds.
    public var layers: Set<Int>
    /// It holds the token embedding (it ran a first stage).
    public var embedding: Bool
    /// It holds the output norm and matrix (it ran a last stage).
    public var output: Bool

    /// Holdings (nothing by default).
    public init(wholeFile: Bool = false, layers: Set<Int> = [], embedding: Bool = false, output: Bool = false) {
        self.wholeFile = wholeFile
        self.layers = layers
        self.embedding = embedding
        self.output = output
    }

    /// Adds what a stage running `range` of a `layerCount`-block model loads.
    public mutating func add(stage range: LayerRange, layerCount: Int) {
        layers.formUnion(range.layers)
        if range.start == 0 { embedding = true }
        if range.end == layerCount { output = true }
    }

    /// Adds what a worker reported its layer cache holds of the model.
    public mutating func add(cached: CachedLayers) {
        layers.formUnion(cached.layers)
        embedding = embedding || cached.embedding
        output = output || cached.output
    }

    /// Bytes a stage running blocks `[start, end)` of `model` must pull (0 with the whole file).
    public func bytesToPull(_ start: Int, _ end: Int, model: ModelFacts) -> UInt64 {
        guard !wholeFile else { return 0 }
        var bytes: UInt64 = 0
        for l in start..<end where !layers.contains(l) { bytes += UInt64(model.layerBytes[l]) }
        if start == 0, !embedding { bytes += UInt64(model.embeddingBytes) }
        if end == model.layerCount, !output { bytes += UInt64(model.outputBytes) }
        return bytes
    }
}

/// How a plan weighs the bytes it makes workers pull against the speed of the pipeline it makes.
public struct MovementCost: Sendable, Equatable {
    /// Link speed of pulls, bytes per second.
    public var linkBytesPerSecond: Double
    /// Busy seconds over which a faster pipeline pays back a pull. 0 = recovery: the fewest bytes
    /// first (survivors keep the layers they hold; what was lost goes to its neighbours), then the
    /// fastest pipeline among those.
    public var paybackSeconds: Double

    /// A weighing.
    public init(linkBytesPerSecond: Double, paybackSeconds: Double) {
        self.linkBytesPerSecond = linkBytesPerSecond
        self.paybackSeconds = paybackSeconds
    }

    /// Recovery after a loss: fewest bytes, then speed.
    public static func recovery(linkBytesPerSecond: Double) -> MovementCost {
        MovementCost(linkBytesPerSecond: linkBytesPerSecond, paybackSeconds: 0)
    }
}

extension Planner {
    /// The predicted bottleneck of `plan` in layer-times: each stage's work (its layers, plus the
    /// output matrix for the last of several) over its worker's speed; the slowest stage's.
    public static func bottleneck(_ plan: PipelinePlan, workers: [PlanWorker], model: ModelFacts) -> Double {
        let speeds = Dictionary(workers.map { ($0.id, $0.speed.isFinite && $0.speed > 0 ? $0.speed : 1e-9) }, uniquingKeysWith: { a, _ in a })
        let outputWork = plan.stages.count > 1 ? model.outputWorkInLayers : 0
        return plan.stages.map { s in
            (Double(s.layers.count) + (s.layers.end == model.layerCount ? outputWork : 0)) / (speeds[s.workerID] ?? 1e-9)
        }.max() ?? 0
    }

    /// Bytes the workers of `plan` must pull, given what each holds.
    public static func pullBytes(_ plan: PipelinePlan, workers: [PlanWorker], model: ModelFacts) -> UInt64 {
        plan.stages.reduce(0) { sum, s in
            let held = workers.first { $0.id == s.workerID }?.holdings ?? LayerHoldings()
            return sum + held.bytesToPull(s.layers.start, s.layers.end, model: model)
        }
    }

    /// Plans `model` over `workers` (in pipeline order) weighing movement: of the plans that give
    /// every worker at least one layer within its memory, the one with the lowest
    /// `pull bytes / link speed + payback × (bottleneck / best bottleneck − 1)` (with a payback of
    /// 0: the fewest bytes, then the lowest bottleneck). The proportional plan
    /// (``plan(model:workers:contextTokens:batchSequences:overheadBytes:)``) is kept unless this
    /// one is strictly better, so with nothing held anywhere the result does not change.
    public static func plan(model: ModelFacts, workers: [PlanWorker], contextTokens: Int, batchSequences: Int,
                            overheadBytes: UInt64 = 32 << 20, movement: MovementCost) throws(PlanError) -> PipelinePlan {
        let proportional = try plan(model: model, workers: workers, contextTokens: contextTokens, batchSequences: batchSequences,
                                    overheadBytes: overheadBytes)
        let n = model.layerCount
        let w = workers.count
        guard w >= 1, w <= n else { return proportional }
        let kvPerLayer = UInt64(model.kvBytesPerTokenPerLayer) * UInt64(max(1, contextTokens)) * UInt64(max(1, batchSequences))
        var prefix = [UInt64](repeating: 0, count: n + 1)
        for l in 0..<n { prefix[l + 1] = prefix[l] + UInt64(model.layerBytes[l]) + kvPerLayer }
        func memory(_ s: Int, _ e: Int) -> UInt64 {
            overheadBytes + prefix[e] - prefix[s] + (s == 0 ? UInt64(model.embeddingBytes) : 0) + (e == n ? UInt64(model.outputBytes) : 0)
        }
        let outputWork = w > 1 ? model.outputWorkInLayers : 0
        let speeds = workers.map { $0.speed.isFinite && $0.speed > 0 ? $0.speed : 1e-9 }
        func time(_ i: Int, _ s: Int, _ e: Int) -> Double { (Double(e - s) + (e == n ? outputWork : 0)) / speeds[i] }
        // pulls[i][s][e - s - 1]: bytes worker i pulls to run [s, e).
        let pulls: [[[UInt64]]] = workers.map { worker in
            (0..<n).map { s in (s + 1...n).map { e in worker.holdings.bytesToPull(s, e, model: model) } }
        }
        /// The plan pulling the fewest bytes with every stage's time at most `limit` (nil: none).
        func fewestBytes(limit: Double) -> (bytes: UInt64, stages: [(Int, Int)])? {
            let none = UInt64.max
            var best = [[UInt64]](repeating: [UInt64](repeating: none, count: n + 1), count: w + 1)
            var from = [[Int]](repeating: [Int](repeating: -1, count: n + 1), count: w + 1)
            best[0][0] = 0
            for i in 0..<w {
                let later = w - i - 1
                for s in 0..<n where best[i][s] != none && s + 1 <= n - later {
                    for e in (s + 1)...(n - later) {
                        guard memory(s, e) <= workers[i].memoryBytes else { break }
                        guard time(i, s, e) <= limit * (1 + 1e-12) else { break }
                        let bytes = best[i][s] + pulls[i][s][e - s - 1]
                        if bytes < best[i + 1][e] {
                            best[i + 1][e] = bytes
                            from[i + 1][e] = s
                        }
                    }
                }
            }
            guard best[w][n] != none else { return nil }
            var stages: [(Int, Int)] = []
            var e = n
            for i in stride(from: w, to: 0, by: -1) {
                let s = from[i][e]
                stages.append((s, e))
                e = s
            }
            return (best[w][n], stages.reversed())
        }
        // Candidate limits: every stage time a worker could have.
        var limits: [Double] = []
        for i in 0..<w {
            for s in 0..<n {
                for e in (s + 1)...n {
                    guard memory(s, e) <= workers[i].memoryBytes else { break }
                    limits.append(time(i, s, e))
                }
            }
        }
        limits = Array(Set(limits)).sorted()
        guard let loosest = limits.last, let unbounded = fewestBytes(limit: loosest) else { return proportional }
        /// The first index in `limits` whose plan satisfies `ok` (plans get no worse as limits grow).
        func firstLimit(_ ok: ((bytes: UInt64, stages: [(Int, Int)])?) -> Bool) -> Int {
            var lo = 0
            var hi = limits.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if ok(fewestBytes(limit: limits[mid])) { hi = mid } else { lo = mid + 1 }
            }
            return lo
        }
        func make(_ stages: [(Int, Int)]) -> PipelinePlan {
            PipelinePlan(stages: zip(workers, stages).map { worker, r in
                PlannedStage(workerID: worker.id, layers: LayerRange(r.0, r.1)!, memoryBytes: memory(r.0, r.1))
            })
        }
        let fastest = max(1e-12, limits[firstLimit { $0 != nil }])
        func cost(_ p: PipelinePlan) -> Double {
            let moving = Double(pullBytes(p, workers: workers, model: model)) / max(1, movement.linkBytesPerSecond)
            return moving + movement.paybackSeconds * (bottleneck(p, workers: workers, model: model) / fastest - 1)
        }
        var chosen: PipelinePlan
        if movement.paybackSeconds <= 0 {
            let i = firstLimit { $0?.bytes == unbounded.bytes }
            guard let found = fewestBytes(limit: limits[i]) else { return proportional }
            chosen = make(found.stages)
            let (pb, cb) = (pullBytes(proportional, workers: workers, model: model), found.bytes)
            let better = cb < pb || (cb == pb && bottleneck(chosen, workers: workers, model: model)
                < bottleneck(proportional, workers: workers, model: model) * (1 - 1e-9))
            return better ? chosen : proportional
        }
        // Weighing both: scan the limits from the fastest up (at most 256 of them) until the
        // slowdown alone costs more than the best plan found.
        let start = limits.firstIndex(of: fastest) ?? 0
        let step = max(1, (limits.count - start) / 256)
        chosen = proportional
        var best = cost(proportional)
        for i in stride(from: start, to: limits.count, by: step) {
            if movement.paybackSeconds * (limits[i] / fastest - 1) >= best { break }
            guard let found = fewestBytes(limit: limits[i]) else { continue }
            let candidate = make(found.stages)
            let c = cost(candidate)
            if c < best - 1e-9 {
                best = c
                chosen = candidate
            }
        }
        return chosen
    }
}
