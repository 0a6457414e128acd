import CaravanCore

/// A worker as the planner sees it.
public struct PlanWorker: Sendable, Equatable {
    /// Worker id.
    public var id: String
    /// Memory it offers, bytes.
    public var memoryBytes: UInt64
    /// Relative speed (only ratios matter); non-positive or non-finite counts as the smallest
    /// positive speed.
    public var speed: Double
    /// What it holds of the model without a pull (weighed by the movement-aware plan).
    public var holdings: LayerHoldings

    /// Creates a planner input.
    public init(id: String, memoryBytes: UInt64, speed: Double, holdings: LayerHoldings = LayerHoldings()) {
        self.id = id
        self.memoryBytes = memoryBytes
        self.speed = speed
        self.holdings = holdings
    }
}

/// One stage of a plan.
public struct PlannedStage: Sendable, Equatable {
    /// The worker that runs it.
    public var workerID: String
    /// Its layers.
    public var layers: LayerRange
    /// Bytes it needs (weights, KV cache, overhead).
    public var memoryBytes: UInt64

    /// Creates a stage.
    public init(workerID: String, layers: LayerRange, memoryBytes: UInt64) {
        self.workerID = workerID
        self.layers = layers
        self.memoryBytes = memoryBytes
    }
}

/// A pipeline: stages in order, covering every layer exactly once.
public struct PipelinePlan: Sendable, Equatable {
    /// The stages, first to last.
    public var stages: [PlannedStage]

    /// Creates a plan.
    public init(stages: [PlannedStage]) { self.stages = stages }
}

/// Why no plan exists.
public enum PlanError: Error, Equatable, CustomStringConvertible, Sendable {
    /// No workers were given.
    case noWorkers
    /// The workers' memory cannot hold the model with its caches.
    case insufficientMemory(neededBytes: UInt64, offeredBytes: UInt64, detail: String)
    /// A size the plan needs (KV cache, weights, their sum) does not fit in 64 bits, or is negative.
    case sizeOutOfRange(String)

    /// The reason in words, for logs and for `caravanctl plan`.
    public var description: String {
        switch self {
        case .noWorkers: return "no workers to plan for"
        case .sizeOutOfRange(let what): return "no plan: \(what)"
        case let .insufficientMemory(needed, offered, detail):
            return "the cluster cannot hold the model: it needs \(Planner.mib(needed)) MiB but the workers offer "
                + "\(Planner.mib(offered)) MiB in all (\(detail))"
        }
    }
}

/// Splits a model's layers into contiguous stages over workers: layer counts proportional to each
/// worker's speed, never more than a worker's memory holds (its layers' weights + KV cache for
/// `contextTokens × batchSequences` + the embedding for the first stage and the output for the
/// last + a fixed overhead). A pure function.
public enum Planner {
    /// Plans `model` over `workers` (in pipeline order).
    public static func plan(model: ModelFacts, workers: [PlanWorker], contextTokens: Int, batchSequences: Int,
                            overheadBytes: UInt64 = 32 << 20) throws(PlanError) -> PipelinePlan {
        guard !workers.isEmpty else { throw .noWorkers }
        let n = model.layerCount
        // Every size is checked once here: the total need bounds every stage's cost, so the sums
        // below cannot overflow. Context and batch may come from a client (`PlanPreviewRequest`).
        let layerSizes = model.layerBytes.compactMap(CheckedArithmetic.unsigned)
        guard layerSizes.count == n, n == model.layerBytes.count,
              let embeddingSize = CheckedArithmetic.unsigned(model.embeddingBytes),
              let outputSize = CheckedArithmetic.unsigned(model.outputBytes),
              let kvPerToken = CheckedArithmetic.unsigned(model.kvBytesPerTokenPerLayer) else {
            throw .sizeOutOfRange("the model has a negative size or a layer count that does not match its sizes")
        }
        guard let kvPerLayer = CheckedArithmetic.product(kvPerToken, UInt64(max(1, contextTokens)), UInt64(max(1, batchSequences))),
              let kvTotal = CheckedArithmetic.product(kvPerLayer, UInt64(n)) else {
            throw .sizeOutOfRange("the KV cache for \(contextTokens) tokens × \(batchSequences) sequences × \(n) layers × "
                + "\(kvPerToken) bytes per token and layer exceeds 2^64 bytes")
        }
        guard let weights = CheckedArithmetic.sum(layerSizes),
              let needed = CheckedArithmetic.sum(weights, kvTotal, embeddingSize, outputSize, overheadBytes) else {
            throw .sizeOutOfRange("the model's weights with a KV cache of \(mib(kvTotal)) MiB exceed 2^64 bytes")
        }

        func cost(_ start: Int, _ end: Int) -> UInt64 {
            var bytes = overheadBytes
            for l in start..<end { bytes += layerSizes[l] + kvPerLayer }
            if start == 0 { bytes += embeddingSize }
            if end == n { bytes += outputSize }
            return bytes
        }
        /// Most layers `worker` can take starting at `start`, at most `limit`.
        func capacity(_ worker: PlanWorker, from start: Int, limit: Int) -> Int {
            var count = 0
            while count < limit, start + count < n, cost(start, start + count + 1) <= worker.memoryBytes { count += 1 }
            return count
        }
        func assign(targets: [Int]) -> [PlannedStage]? {
            var stages: [PlannedStage] = []
            var start = 0
            for (i, worker) in workers.enumerated() where start < n {
                let want = i == workers.count - 1 ? n - start : targets[i]
                let take = capacity(worker, from: start, limit: want)
                guard take > 0 else { continue }
                stages.append(PlannedStage(workerID: worker.id, layers: LayerRange(start, start + take)!,
                                           memoryBytes: cost(start, start + take)))
                start += take
            }
            return start == n ? stages : nil
        }

        // Proportional targets (largest remainder), at least one layer each while layers last. The
        // last stage also runs the output matrix: its work counts as the layers its multiply-adds
        // weigh (``ModelFacts/outputWorkInLayers`` says why), so the last worker takes fewer layers.
        // Speeds come from workers' reports: clamped so that their sum stays finite.
        let speeds = workers.map { $0.speed.isFinite && $0.speed > 0 ? min(max($0.speed, 1e-9), 1e12) : 1e-9 }
        let total = speeds.reduce(0, +)
        let outputWork = workers.count > 1 ? model.outputWorkInLayers : 0
        var ideal = speeds.map { $0 / total * (Double(n) + outputWork) }
        ideal[ideal.count - 1] = max(1, ideal[ideal.count - 1] - outputWork)
        let excess = ideal.reduce(0, +) - Double(n)
        if excess > 0 {
            // The last worker is so slow that even one layer overloads it: share out the rest.
            let others = ideal.dropLast().reduce(0, +)
            for i in 0..<(ideal.count - 1) where others > 0 { ideal[i] -= excess * ideal[i] / others }
        }
        var targets = ideal.map { max(1, min(n, CheckedArithmetic.int($0) ?? n)) }
        var order = Array(ideal.indices).sorted { ideal[$0] - ideal[$0].rounded(.down) > ideal[$1] - ideal[$1].rounded(.down) }
        while targets.reduce(0, +) < n, !order.isEmpty { targets[order.removeFirst()] += 1 }
        while targets.reduce(0, +) > n, let i = targets.indices.max(by: { targets[$0] < targets[$1] }) { targets[i] -= 1 }

        if let stages = assign(targets: targets) { return PipelinePlan(stages: stages) }
        // Memory-bound: let every worker take as much as it can, in order.
        if let stages = assign(targets: [Int](repeating: n, count: workers.count)) { return PipelinePlan(stages: stages) }

        let offered = workers.reduce(UInt64(0)) { $0.addingReportingOverflow($1.memoryBytes).overflow ? .max : $0 + $1.memoryBytes }
        let detail = "weights \(mib(weights)) MiB + KV cache \(mib(kvTotal)) MiB for \(contextTokens) tokens × "
            + "\(batchSequences) sequences + embedding \(mib(embeddingSize)) MiB + output "
            + "\(mib(outputSize)) MiB + \(mib(overheadBytes)) MiB overhead per stage; offered: "
            + workers.map { "\($0.id) \(mib($0.memoryBytes)) MiB" }.joined(separator: ", ")
        throw .insufficientMemory(neededBytes: needed, offeredBytes: offered, detail: detail)
    }

    static func mib(_ bytes: UInt64) -> String {
        let v = Double(bytes) / 1_048_576
        return v >= 10 ? String(Int(v.rounded())) : String(Double(Int(v * 10)) / 10)
    }
}
