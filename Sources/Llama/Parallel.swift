import Dispatch

/// Runs data-parallel loops on a fixed number of threads.
///
/// The seam for the compute thread pool: kernels split work into `width` chunks and call
/// ``run(_:)`` with a body that handles chunk `i` of `width`.
public protocol ParallelRunner: Sendable {
    /// Number of chunks work is split into (the thread count).
    var width: Int { get }
    /// Calls `body(i)` for every `i` in `0..<width`, concurrently, and returns when all are done.
    func run(_ body: (Int) -> Void)
}

/// A ``ParallelRunner`` on Dispatch's shared pool; a width of 1 runs inline on the caller.
public struct DispatchParallelRunner: ParallelRunner {
    public let width: Int

    /// Creates a runner using `threads` threads (at least 1).
    public init(threads: Int) { width = max(1, threads) }

    public func run(_ body: (Int) -> Void) {
        if width == 1 { body(0); return }
        DispatchQueue.concurrentPerform(iterations: width, execute: body)
    }
}

extension ParallelRunner {
    /// Splits `0..<count` into `width` contiguous chunks, rounded to multiples of `granularity`,
    /// and calls `body(range, chunkIndex)` for the non-empty ones.
    func forEachChunk(of count: Int, granularity: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        guard count > 0 else { return }
        let w = min(width, max(1, (count + granularity - 1) / granularity))
        if w == 1 { body(0..<count, 0); return }
        let units = (count + granularity - 1) / granularity
        run { i in
            guard i < w else { return }
            let lo = min(count, (units * i / w) * granularity)
            let hi = min(count, (units * (i + 1) / w) * granularity)
            if lo < hi { body(lo..<hi, i) }
        }
    }
}
