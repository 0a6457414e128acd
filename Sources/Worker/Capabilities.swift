import CaravanCore
import CaravanWire
import Fingerprint
import Foundation

/// What a worker tells the coordinator about itself.
public struct WorkerCapabilities: Sendable, Equatable {
    /// Cores used for compute.
    public var cores: Int
    /// Physical memory, bytes.
    public var totalMemory: UInt64
    /// Memory offered for weights and caches, bytes.
    public var freeMemory: UInt64
    /// Relative compute speed (higher is faster; only ratios between workers matter).
    public var speed: Double
    /// Model files held, with their hashes.
    public var models: [ModelFingerprint]
    /// Layers of models held in the layer cache.
    public var cachedLayers: [CachedLayers]
    /// Bytes of the layer cache it may fill with standby copies (0 = none).
    public var standbyBudget: UInt64

    /// Creates capabilities.
    public init(cores: Int, totalMemory: UInt64, freeMemory: UInt64, speed: Double, models: [ModelFingerprint],
                cachedLayers: [CachedLayers] = [], standbyBudget: UInt64 = 0) {
        self.cores = cores
        self.totalMemory = totalMemory
        self.freeMemory = freeMemory
        self.speed = speed
        self.models = models
        self.cachedLayers = cachedLayers
        self.standbyBudget = standbyBudget
    }

    /// The `Register` message for a worker with data endpoint `dataAddress`.
    public func register(workerID: String, dataAddress: String) -> Caravan_V1_Register {
        var caps = Caravan_V1_WorkerCapabilities()
        caps.cores = UInt32(clamping: cores)
        caps.totalMemoryBytes = totalMemory
        caps.freeMemoryBytes = freeMemory
        caps.measuredGflops = speed
        caps.models = models.map { m in
            var held = Caravan_V1_HeldModel()
            held.model = Caravan_V1_ModelIdentity(name: m.name, sha256: m.sha256, size: m.size)
            return held
        }
        caps.activationDtypes = [.f16, .f32]
        caps.cachedLayers = cachedLayers.prefix(CachedLayers.maxModels).map(\.wire)
        caps.standbyBudgetBytes = standbyBudget
        var r = Caravan_V1_Register()
        r.workerID = workerID
        r.capabilities = caps
        r.dataAddress = dataAddress
        return r
    }
}

/// A short start-up benchmark: multiply-adds over a small float buffer, the best of five trials
/// (the best is the least disturbed by other processes), scaled by `threads`; giga-operations per
/// second. Only the ratio between workers matters.
public func measureSpeed(threads: Int) -> Double {
    let count = 1 << 16
    let rounds = 32
    let a = [Float](repeating: 1.0001, count: count)
    var b = [Float](repeating: 0.5, count: count)
    var best = 0.0
    for _ in 0..<5 {
        let start = ContinuousClock.now
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeMutableBufferPointer { pb in
                for _ in 0..<rounds {
                    for i in 0..<count { pb[i] = pb[i] * pa[i] + 0.25 }
                }
            }
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        best = max(best, Double(count * rounds * 2) / max(seconds, 1e-6) / 1e9)
    }
    let sink = b[count / 2]
    return best * Double(max(1, threads)) + (sink.isNaN ? 1e-9 : 0)
}
