import Synchronization
import XCTest
@testable import Llama

final class ParallelTests: XCTestCase {
    func testEveryChunkRunsOnceOnAValidSlot() {
        for threads in [1, 2, 3] {
            let pool = ComputeThreadPool(threads: threads)
            for round in 0..<2000 {
                let chunks = 1 + round % 13
                let counts = Mutex([Int](repeating: 0, count: chunks))
                let badSlots = Mutex(0)
                pool.run(chunks: chunks) { c, slot in
                    counts.withLock { $0[c] += 1 }
                    if slot < 0 || slot >= threads { badSlots.withLock { $0 += 1 } }
                }
                XCTAssertEqual(counts.withLock { $0 }, [Int](repeating: 1, count: chunks), "round \(round)")
                XCTAssertEqual(badSlots.withLock { $0 }, 0)
            }
        }
    }

    /// Back-to-back jobs whose chunk counts change, with chunks so short that the caller often
    /// finishes a job alone while a worker is still on its way in: a worker late for one job must
    /// never claim a chunk of the next (a chunk ran twice before the generation was announced
    /// ahead of the job).
    func testLateWorkerNeverRunsAChunkOfTheNextJob() {
        for threads in [2, 3] {
            let pool = ComputeThreadPool(threads: threads)
            let runs = UnsafeMutablePointer<Int>.allocate(capacity: 16)
            defer { runs.deallocate() }
            var doubled = 0
            for round in 0..<20_000 {
                let chunks = 2 + round % 14
                runs.initialize(repeating: 0, count: chunks)
                let counts = Mutex(())
                pool.run(chunks: chunks) { c, _ in counts.withLock { _ in runs[c] += 1 } }
                for c in 0..<chunks where runs[c] != 1 { doubled += 1 }
            }
            XCTAssertEqual(doubled, 0, "threads \(threads)")
        }
    }

    func testForEachChunkCoversTheRangeExactly() {
        let pool = ComputeThreadPool(threads: 2)
        for count in [1, 5, 16, 17, 576, 1000] {
            let hits = Mutex([Int](repeating: 0, count: count))
            let misaligned = Mutex(0)
            pool.forEachChunk(of: count, granularity: 16) { range, _ in
                if range.lowerBound % 16 != 0 { misaligned.withLock { $0 += 1 } }
                hits.withLock { for i in range { $0[i] += 1 } }
            }
            XCTAssertEqual(hits.withLock { $0 }, [Int](repeating: 1, count: count), "count \(count)")
            XCTAssertEqual(misaligned.withLock { $0 }, 0)
        }
    }

    func testSlotsAreNeverSharedAtOnce() {
        let pool = ComputeThreadPool(threads: 2)
        let busy = Mutex([0, 0])
        let clashes = Mutex(0)
        for _ in 0..<500 {
            pool.run(chunks: 8) { _, slot in
                let clash = busy.withLock { b -> Bool in b[slot] += 1; return b[slot] != 1 }
                if clash { clashes.withLock { $0 += 1 } }
                var x = 0
                for i in 0..<200 { x &+= i }
                _ = x
                busy.withLock { $0[slot] -= 1 }
            }
        }
        XCTAssertEqual(clashes.withLock { $0 }, 0)
    }
}
