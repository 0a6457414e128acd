import CKernels
import Foundation

/// How fast this machine reads memory with plain loads: the yardstick for decode, which on a
/// model larger than the caches is bound by streaming its weights from DRAM.
public enum MemoryBandwidthProbe {
    /// Bytes per second that `threads` threads read from a buffer of `bytes` (split evenly),
    /// the median of `repetitions` passes after one pass that faults the pages in.
    public static func readBytesPerSecond(threads: Int, bytes: Int = 1 << 30, repetitions: Int = 5) -> Double {
        let width = max(1, threads)
        let slice = bytes / width / 4096 * 4096
        guard slice > 0 else { return 0 }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: slice * width, alignment: 1 << 21)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 1, count: slice * width)
        let pool = ComputeThreadPool(threads: width)
        let sink = UnsafeMutablePointer<UInt64>.allocate(capacity: width)
        defer { sink.deallocate() }
        var times: [Double] = []
        for _ in 0..<max(1, repetitions) {
            let start = DispatchTime.now().uptimeNanoseconds
            pool.run(chunks: width) { chunk, _ in
                sink[chunk] = ck_read_bytes(buffer + chunk * slice, slice)
            }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        times.sort()
        return Double(slice * width) / times[times.count / 2]
    }
}
