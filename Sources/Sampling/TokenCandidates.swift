/// The set of tokens still in the running during one sampling step, with their logits.
///
/// Stages remove tokens or rescale logits. The order of candidates is deterministic: either
/// vocabulary order (as built) or, once a stage needed it, sorted by logit descending with ties
/// broken by lower token id first. The final draw walks the candidates in that order.
public struct TokenCandidates: Sendable, Equatable {
    /// Token ids of the candidates.
    public private(set) var ids: [Int32]
    /// Logits of the candidates, parallel to `ids`.
    public private(set) var logits: [Float]
    /// Whether the candidates are sorted (logit descending, then id ascending).
    public private(set) var isSorted: Bool

    /// An empty candidate set.
    public init() {
        ids = []
        logits = []
        isSorted = true
    }

    /// All tokens of a vocabulary, in id order.
    public init(logits: [Float]) {
        self.init()
        logits.withUnsafeBufferPointer { reset(allOf: $0) }
    }

    /// Number of candidates.
    public var count: Int { ids.count }

    /// Replaces the contents with every token of `vocabLogits`, in id order, keeping storage.
    public mutating func reset(allOf vocabLogits: UnsafeBufferPointer<Float>) {
        ids.removeAll(keepingCapacity: true)
        logits.removeAll(keepingCapacity: true)
        ids.reserveCapacity(vocabLogits.count)
        logits.reserveCapacity(vocabLogits.count)
        for i in 0..<vocabLogits.count {
            ids.append(Int32(i))
            logits.append(vocabLogits[i])
        }
        isSorted = vocabLogits.count <= 1
    }

    /// Replaces the contents with the `k` best tokens of `vocabLogits`, sorted, without sorting the
    /// whole vocabulary (a bounded heap, O(n log k)). `k >= count` keeps everything (sorted).
    public mutating func reset(topK k: Int, of vocabLogits: UnsafeBufferPointer<Float>) {
        precondition(k > 0, "top-k must be positive")
        let selected = Self.selectBest(k, of: vocabLogits, ids: nil)
        ids.removeAll(keepingCapacity: true)
        logits.removeAll(keepingCapacity: true)
        for index in selected {
            ids.append(Int32(index))
            logits.append(vocabLogits[index])
        }
        isSorted = false
        sort()
    }

    /// Indices (into `values`) of the `k` best entries, in no particular order. "Better" means a
    /// higher value, then a lower id (`ids[i]`, or `i` when `ids` is nil).
    static func selectBest(_ k: Int, of values: UnsafeBufferPointer<Float>, ids: [Int32]?) -> [Int] {
        if k >= values.count { return Array(0..<values.count) }
        @inline(__always) func id(_ i: Int) -> Int32 { ids.map { $0[i] } ?? Int32(i) }
        // "a is worse than b": the min-heap keeps the worst kept entry at the root.
        @inline(__always) func worse(_ a: Int, _ b: Int) -> Bool {
            let va = values[a], vb = values[b]
            return va < vb || (va == vb && id(a) > id(b))
        }
        var heap: [Int] = []
        heap.reserveCapacity(k)
        for i in 0..<values.count {
            if heap.count < k {
                heap.append(i)
                var c = heap.count - 1
                while c > 0 {
                    let p = (c - 1) / 2
                    if !worse(heap[c], heap[p]) { break }
                    heap.swapAt(c, p)
                    c = p
                }
            } else if worse(heap[0], i) {
                heap[0] = i
                var p = 0
                while true {
                    let l = 2 * p + 1, r = l + 1
                    var m = p
                    if l < k && worse(heap[l], heap[m]) { m = l }
                    if r < k && worse(heap[r], heap[m]) { m = r }
                    if m == p { break }
                    heap.swapAt(p, m)
                    p = m
                }
            }
        }
        return heap
    }

    /// Sorts by logit descending, ties by lower id first.
    public mutating func sort() {
        guard !isSorted else { return }
        var order = Array(0..<ids.count)
        let l = logits, d = ids
        order.sort { a, b in l[a] > l[b] || (l[a] == l[b] && d[a] < d[b]) }
        ids = order.map { d[$0] }
        logits = order.map { l[$0] }
        isSorted = true
    }

    /// Top-k stage: keeps the `k` best candidates, sorted (`k <= 0` is a no-op).
    public mutating func keepTopK(_ k: Int) {
        guard k > 0, k < ids.count else { return }
        if !isSorted {
            let selected = logits.withUnsafeBufferPointer { Self.selectBest(k, of: $0, ids: ids) }
            ids = selected.map { ids[$0] }
            logits = selected.map { logits[$0] }
            sort()
            return
        }
        ids.removeSubrange(k...)
        logits.removeSubrange(k...)
    }

    /// Top-p (nucleus) stage: sorts, then keeps the shortest prefix whose softmax mass is `>= p`
    /// (at least one token). `p >= 1` is a no-op.
    public mutating func keepTopP(_ p: Float) {
        guard p < 1, ids.count > 1 else { return }
        sort()
        let probs = probabilities()
        var cumulative = 0.0
        var keep = ids.count
        for (i, q) in probs.enumerated() {
            cumulative += Double(q)
            if cumulative >= Double(p) {
                keep = i + 1
                break
            }
        }
        ids.removeSubrange(keep...)
        logits.removeSubrange(keep...)
    }

    /// Min-p stage: keeps tokens whose probability is at least `p` times the best token's
    /// (equivalently, logit >= max logit + ln p); at least one token survives. `p <= 0` is a no-op.
    public mutating func keepMinP(_ p: Float) {
        guard p > 0, ids.count > 1 else { return }
        guard let maxLogit = logits.max() else { return }
        let threshold = maxLogit + logf(p)
        var newIds: [Int32] = []
        var newLogits: [Float] = []
        for i in 0..<ids.count where logits[i] >= threshold {
            newIds.append(ids[i])
            newLogits.append(logits[i])
        }
        ids = newIds
        logits = newLogits
    }

    /// Temperature stage: divides every logit by `t` (`t` must be > 0; 1 is a no-op).
    public mutating func applyTemperature(_ t: Float) {
        precondition(t > 0, "temperature stage needs t > 0; use greedy selection for 0")
        guard t != 1 else { return }
        for i in 0..<logits.count { logits[i] /= t }
    }

    /// Softmax of the candidate logits, in candidate order (computed in Double).
    public func probabilities() -> [Float] {
        guard let maxLogit = logits.max() else { return [] }
        var exps = [Double](repeating: 0, count: logits.count)
        var sum = 0.0
        for i in 0..<logits.count {
            let e = expDouble(Double(logits[i] - maxLogit))
            exps[i] = e
            sum += e
        }
        return exps.map { Float($0 / sum) }
    }

    /// Picks a candidate by inverse-CDF with a uniform `u` in `[0, 1)`, walking the candidates in
    /// their current order. Returns `nil` when there are no candidates.
    public func draw(uniform u: Double) -> Int32? {
        guard let maxLogit = logits.max() else { return nil }
        var exps = [Double](repeating: 0, count: logits.count)
        var sum = 0.0
        for i in 0..<logits.count {
            let e = expDouble(Double(logits[i] - maxLogit))
            exps[i] = e
            sum += e
        }
        let target = u * sum
        var cumulative = 0.0
        for i in 0..<exps.count {
            cumulative += exps[i]
            if target < cumulative { return ids[i] }
        }
        // Rounding: fall back to the last candidate with non-zero weight.
        return ids[exps.lastIndex(where: { $0 > 0 }) ?? (ids.count - 1)]
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

@inline(__always) func expDouble(_ x: Double) -> Double { exp(x) }
