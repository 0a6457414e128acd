import Foundation
import Synchronization

/// Runs data-parallel loops on a fixed number of threads.
///
/// The seam for the compute thread pool. Work is cut into chunks; each chunk runs on one of
/// `width` thread slots, and the slot index lets a chunk use per-thread scratch memory.
public protocol ParallelRunner: Sendable {
    /// Number of threads (scratch slots `0..<width`).
    var width: Int { get }
    /// Calls `body(chunk, slot)` for every chunk in `0..<chunks`, spread over the threads, and
    /// returns when all are done. Two chunks never run on the same slot at once.
    func run(chunks: Int, _ body: (Int, Int) -> Void)
}

/// Runs every chunk on the calling thread (slot 0), one after another.
public struct SerialRunner: ParallelRunner {
    public let width = 1
    public init() {}
    public func run(chunks: Int, _ body: (Int, Int) -> Void) { for c in 0..<chunks { body(c, 0) } }
}

/// A persistent pool of compute threads. The caller and `threads - 1` workers claim chunks from
/// a shared atomic ticket, so a thread that the OS deschedules delays nothing: the others take
/// its chunks. Workers spin briefly between jobs (decode steps come every few milliseconds),
/// then sleep on a condition, so an idle daemon uses no CPU. No allocation per job.
public final class ComputeThreadPool: ParallelRunner, @unchecked Sendable {
    public let width: Int
    private let state: PoolState

    /// Starts `threads - 1` worker threads (none for 1).
    public init(threads: Int) {
        width = max(1, threads)
        state = PoolState()
        for slot in 1..<max(1, width) {
            let s = state
            let t = Thread { s.workerLoop(slot: slot) }
            t.name = "caravan-compute-\(slot)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    deinit { state.stop() }

    public func run(chunks: Int, _ body: (Int, Int) -> Void) {
        guard chunks > 0 else { return }
        if width == 1 || chunks == 1 {
            for c in 0..<chunks { body(c, 0) }
            return
        }
        withoutActuallyEscaping(body) { job in
            state.execute(job, chunks: chunks)
        }
    }
}

/// Shared state of a ``ComputeThreadPool`` (kept apart so workers do not retain the pool).
///
/// `ticket` packs (generation << 32 | next chunk). A claim is a compare-and-swap on it, so a
/// thread can only claim chunks of the job that is current; `done` counts finished chunks, and
/// the caller returns (and the job closure dies) only when all chunks of its job are done.
private final class PoolState: @unchecked Sendable {
    private let ticket = Atomic<UInt64>(0)
    private let done = Atomic<Int>(0)
    /// Workers inside ``work(generation:slot:)``: the caller waits for none before the job's
    /// closure dies, so that no worker still holds a reference to it (a worker returns from a
    /// chunk, releasing the closure, only after counting the chunk done).
    private let inside = Atomic<Int>(0)
    private var job: ((Int, Int) -> Void)?
    private var chunkCount = 0
    private let condition = NSCondition()
    private var sleepers = 0
    private var stopped = false
    private static let spinLimit = 100_000
    /// Chunk index of a generation whose job is not written yet.
    private static let publishing: UInt64 = 0xFFFF_FFFF

    private static func generation(_ t: UInt64) -> UInt64 { t >> 32 }

    func execute(_ body: @escaping (Int, Int) -> Void, chunks: Int) {
        // The new generation is announced before the job is written, in a state where nothing can
        // be claimed: a worker that took the previous generation's ticket late (after that job
        // ended) now fails its compare-and-swap instead of claiming the new job's chunks under
        // the old generation (it did: a chunk then ran twice).
        let next = (Self.generation(ticket.load(ordering: .relaxed)) + 1) << 32
        ticket.store(next | Self.publishing, ordering: .sequentiallyConsistent)
        job = body
        chunkCount = chunks
        done.store(0, ordering: .relaxed)
        ticket.store(next, ordering: .releasing)
        condition.lock()
        if sleepers > 0 { condition.broadcast() }
        condition.unlock()
        work(generation: Self.generation(next), slot: 0)
        var spins = 0
        while done.load(ordering: .acquiring) < chunks {
            spins += 1
            if spins > 64 { sched_yield() }
        }
        // A worker that ran the last chunks may still be on its way out of `work`; one that
        // enters from now on finds no chunk of this job left and never touches `job`.
        while inside.load(ordering: .acquiring) > 0 {
            spins += 1
            if spins > 64 { sched_yield() }
        }
        job = nil
    }

    /// Claims and runs chunks of `generation` until none are left. Not inlined: every reference
    /// it took to the job's closure is released when it returns.
    @inline(never)
    private func work(generation: UInt64, slot: Int) {
        while true {
            let t = ticket.load(ordering: .acquiring)
            guard Self.generation(t) == generation else { return }
            if t & 0xFFFF_FFFF == Self.publishing { continue }  // the caller is writing the job
            let index = Int(t & 0xFFFF_FFFF)
            guard index < chunkCount else { return }
            let (exchanged, _) = ticket.compareExchange(expected: t, desired: t + 1, ordering: .acquiringAndReleasing)
            guard exchanged else { continue }
            job?(index, slot)
            done.add(1, ordering: .releasing)
        }
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    func workerLoop(slot: Int) {
        var seen: UInt64 = 0
        while true {
            var spins = 0
            var current = Self.generation(ticket.load(ordering: .acquiring))
            while current == seen {
                spins += 1
                if spins > Self.spinLimit {
                    condition.lock()
                    sleepers += 1
                    while Self.generation(ticket.load(ordering: .acquiring)) == seen && !stopped { condition.wait() }
                    sleepers -= 1
                    let isStopped = stopped
                    condition.unlock()
                    if isStopped { return }
                    spins = 0
                } else if spins & 1023 == 0 {
                    condition.lock()
                    let isStopped = stopped
                    condition.unlock()
                    if isStopped { return }
                }
                current = Self.generation(ticket.load(ordering: .acquiring))
            }
            seen = current
            inside.add(1, ordering: .acquiringAndReleasing)
            work(generation: current, slot: slot)
            inside.subtract(1, ordering: .releasing)
        }
    }
}

extension ParallelRunner {
    /// Splits `0..<count` into contiguous chunks (multiples of `granularity`, a few per thread so
    /// that a slow thread's share is taken by the others) and calls `body(range, slot)` for each.
    func forEachChunk(of count: Int, granularity: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        guard count > 0 else { return }
        let units = (count + granularity - 1) / granularity
        let chunks = width == 1 ? 1 : min(units, width * 4)
        if chunks == 1 { body(0..<count, 0); return }
        run(chunks: chunks) { c, slot in
            let lo = min(count, (units * c / chunks) * granularity)
            let hi = min(count, (units * (c + 1) / chunks) * granularity)
            if lo < hi { body(lo..<hi, slot) }
        }
    }
}
