import Foundation

/// What one token costs on a stage and between stages, from measurements on a reference machine.
///
/// Decode is memory-bound: the time of a layer is taken as proportional to its weight bytes, so
/// one measurement (`layerMs` for a layer of `referenceLayerBytes`) prices layers of any size and
/// quantization; a worker of speed `s` takes `1/s` of that time. Attention over a long context is
/// not counted (it adds little at short contexts).
public struct TokenCostModel: Sendable, Equatable {
    /// Decode time of one token through one reference layer on the reference machine, ms.
    public var layerMs: Double
    /// Weight bytes of that reference layer.
    public var referenceLayerBytes: Double
    /// Fixed cost of one message between nodes (serialization, wake-ups, the network's latency), ms.
    public var hopMs: Double
    /// Network bandwidth between machines, bytes per millisecond (1 Gbit/s = 125 000).
    public var linkBytesPerMs: Double
    /// Bytes of one activation element on the wire (F16: 2, F32: 4).
    public var activationElementBytes: Int

    /// Creates a cost model.
    public init(layerMs: Double, referenceLayerBytes: Double, hopMs: Double, linkBytesPerMs: Double = 125_000,
                activationElementBytes: Int = 2) {
        self.layerMs = layerMs
        self.referenceLayerBytes = referenceLayerBytes
        self.hopMs = hopMs
        self.linkBytesPerMs = linkBytesPerMs
        self.activationElementBytes = activationElementBytes
    }

    /// Measured on the development machine (2 vCPUs of an AMD EPYC Zen 4, release build, one
    /// thread): decode of a Llama-3.1-70B-wide Q4_K_M file (`Scripts/make-bench-model`), scaled
    /// to a mean Llama 3 70B Q4_K_M block of 512 720 896 bytes (docs/benchmarks.md, "70B, on
    /// paper"); a hop costs 0.5 ms plus its bytes over a 1 Gbit/s LAN.
    public static let measuredHere = TokenCostModel(
        layerMs: 24.0, referenceLayerBytes: 512_720_896, hopMs: 0.5, linkBytesPerMs: 125_000)

    /// Milliseconds to decode one token through `bytes` of weights at `speed`.
    public func computeMs(bytes: Int, speed: Double) -> Double {
        layerMs * Double(bytes) / referenceLayerBytes / (speed > 0 ? speed : 1)
    }

    /// Milliseconds to send `bytes` over one hop.
    public func hopMs(bytes: Int) -> Double { hopMs + Double(bytes) / linkBytesPerMs }
}

/// A worker that may not exist: what it offers and how fast it is relative to the machine the
/// cost model was measured on (1 = the same).
public struct PaperWorker: Sendable, Equatable {
    /// A name for reports.
    public var id: String
    /// Memory it offers, bytes.
    public var memoryBytes: UInt64
    /// Speed relative to the reference machine.
    public var speed: Double

    /// Creates a worker.
    public init(id: String, memoryBytes: UInt64, speed: Double = 1) {
        self.id = id
        self.memoryBytes = memoryBytes
        self.speed = speed
    }
}

/// A placement with its predicted decode time.
public struct PaperPrediction: Sendable, Equatable {
    /// The planner's placement (with memory per stage).
    public var plan: PipelinePlan
    /// Compute time of one token on each stage, ms.
    public var stageMs: [Double]
    /// Transfer time of each hop, ms: coordinator → first stage, stage → stage, last stage →
    /// coordinator (the sampled token: the last stage samples, so logits do not travel).
    public var hopMs: [Double]
    /// One sequence alone: the sum of every stage and hop, ms per token.
    public var msPerToken: Double { stageMs.reduce(0, +) + hopMs.reduce(0, +) }
    /// Tokens per second of one sequence alone.
    public var tokensPerSecond: Double { msPerToken > 0 ? 1000 / msPerToken : 0 }
    /// Upper bound with many sequences in flight (one per stage, pipelined): the slowest stage
    /// sets the pace, tokens per second.
    public var pipelinedTokensPerSecond: Double {
        let slowest = stageMs.max() ?? 0
        return slowest > 0 ? 1000 / slowest : 0
    }
}

/// Plans a model over hypothetical workers and predicts the time per token (no I/O).
public enum PaperPlanner {
    /// Bytes of a step's result for one row that the last stage sampled (the token id, its
    /// position and the step's framing): what the last hop carries, not the vocabulary's logits.
    public static let sampledTokenResultBytes = 64

    /// Places `model` on `workers` with the real ``Planner`` and prices it with `cost`.
    public static func predict(model: ModelFacts, workers: [PaperWorker], cost: TokenCostModel, contextTokens: Int,
                               batchSequences: Int) throws(PlanError) -> PaperPrediction {
        let plan = try Planner.plan(model: model, workers: workers.map {
            PlanWorker(id: $0.id, memoryBytes: $0.memoryBytes, speed: $0.speed)
        }, contextTokens: contextTokens, batchSequences: batchSequences)
        var stageMs: [Double] = []
        for stage in plan.stages {
            let speed = workers.first { $0.id == stage.workerID }?.speed ?? 1
            var bytes = stage.layers.layers.reduce(0) { $0 + model.layerBytes[$1] }
            if stage.layers.end == model.layerCount { bytes += model.outputBytes }
            stageMs.append(cost.computeMs(bytes: bytes, speed: speed))
        }
        let activation = model.embeddingLength * cost.activationElementBytes
        var hops = [cost.hopMs(bytes: 16)]  // token ids and positions
        hops += Array(repeating: cost.hopMs(bytes: activation), count: max(0, plan.stages.count - 1))
        hops.append(cost.hopMs(bytes: Self.sampledTokenResultBytes))
        return PaperPrediction(plan: plan, stageMs: stageMs, hopMs: hops)
    }

    /// Parses a byte size such as `32GiB`, `512MiB`, `32G`, `1.5TB` or `1000000` (plain bytes).
    public static func parseBytes(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [
            ("TiB", 1_099_511_627_776), ("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024),
            ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("T", 1_099_511_627_776), ("G", 1_073_741_824),
            ("M", 1_048_576), ("K", 1024), ("B", 1),
        ]
        for (suffix, factor) in units where t.lowercased().hasSuffix(suffix.lowercased()) {
            guard let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v >= 0, v.isFinite
            else { return nil }
            return UInt64(exactly: (v * factor).rounded(.down))
        }
        guard let v = Double(t), v >= 0, v.isFinite else { return nil }
        return UInt64(exactly: v.rounded(.down))
    }
}

extension PaperWorker {
    /// Parses `mem=32GiB[,speed=1][,id=name]` (`caravanctl plan --worker`); the id defaults to
    /// `m<index + 1>`.
    public static func parse(_ spec: String, index: Int) throws(PlanInputError) -> PaperWorker {
        var worker = PaperWorker(id: "m\(index + 1)", memoryBytes: 0, speed: 1)
        for part in spec.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2 else { throw PlanInputError(description: "worker '\(spec)': expected key=value, got '\(part)'") }
            switch kv[0] {
            case "mem", "memory":
                guard let b = PaperPlanner.parseBytes(kv[1]), b > 0 else {
                    throw PlanInputError(description: "worker '\(spec)': bad size '\(kv[1])'")
                }
                worker.memoryBytes = b
            case "speed":
                guard let v = Double(kv[1]), v > 0, v.isFinite else {
                    throw PlanInputError(description: "worker '\(spec)': speed must be a positive number")
                }
                worker.speed = v
            case "id", "name":
                guard !kv[1].isEmpty else { throw PlanInputError(description: "worker '\(spec)': empty id") }
                worker.id = kv[1]
            default:
                throw PlanInputError(description: "worker '\(spec)': unknown key '\(kv[0])' (mem, speed, id)")
            }
        }
        guard worker.memoryBytes > 0 else { throw PlanInputError(description: "worker '\(spec)': give mem=SIZE") }
        return worker
    }
}
