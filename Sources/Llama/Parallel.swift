import Foundation
import Synchronization

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

/// Runs every chunk on the calling thread, one after another (tests, single-thread runs).
public struct SerialRunner: ParallelRunner {
    public let width: Int
    public init(width: Int = 1) { self.width = max(1, width) }
    public func run(_ body: (Int) -> Void) { for i in 0..<width { body(i) } }
}

/// A persistent pool of compute threads: the caller runs chunk 0 and `threads - 1` workers run
/// the others. Workers spin briefly between jobs (decode steps come every few milliseconds) and
/// then sleep on a condition, so an idle daemon uses no CPU. No allocation per job.
public final class ComputeThreadPool: ParallelRunner, @unchecked Sendable {
    public let width: Int
    private let state: PoolState

    /// Starts `threads - 1` worker threads (none for 1).
    public init(threads: Int) {
        width = max(1, threads)
        state = PoolState()
        for i in 1..<max(1, width) {
            let s = state
            let t = Thread { s.workerLoop(index: i) }
            t.name = "caravan-compute-\(i)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    deinit { state.stop() }

    public func run(_ body: (Int) -> Void) {
        if width == 1 { body(0); return }
        withoutActuallyEscaping(body) { job in
            state.publish(job, workers: width - 1)
            job(0)
            state.waitForWorkers()
        }
    }
}

/// Shared state of a ``ComputeThreadPool`` (kept apart so workers do not retain the pool).
private final class PoolState: @unchecked Sendable {
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private var job: ((Int) -> Void)?
    private let condition = NSCondition()
    private var sleepers = 0
    private var stopped = false
    private static let spinLimit = 200_000

    func publish(_ body: @escaping (Int) -> Void, workers: Int) {
        job = body
        pending.store(workers, ordering: .relaxed)
        generation.add(1, ordering: .releasing)
        condition.lock()
        if sleepers > 0 { condition.broadcast() }
        condition.unlock()
    }

    func waitForWorkers() {
        var spins = 0
        while pending.load(ordering: .acquiring) > 0 {
            spins += 1
            if spins > 1000 { sched_yield() }
        }
        job = nil
    }

    func stop() {
        condition.lock()
        stopped = true
        generation.add(1, ordering: .releasing)
        condition.broadcast()
        condition.unlock()
    }

    func workerLoop(index: Int) {
        var seen = 0
        while true {
            var spins = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen {
                spins += 1
                if spins > Self.spinLimit {
                    condition.lock()
                    sleepers += 1
                    while generation.load(ordering: .acquiring) == seen && !stopped { condition.wait() }
                    sleepers -= 1
                    condition.unlock()
                    spins = 0
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            condition.lock()
            let isStopped = stopped
            condition.unlock()
            if isStopped { return }
            job?(index)
            pending.subtract(1, ordering: .releasing)
        }
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
