import CKernels
import GGUF
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A weight matrix inside the mapped model file: `rows` rows of `columns` elements of `type`.
///
/// `y = W x` for a batch of activations is computed on the quantized blocks directly: activations
/// are first quantized to the type the weight type pairs with (as llama.cpp does), then rows are
/// split across threads. Where the active ISA prefers it (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K on
/// AVX2; Q6_K too with AVX-512 VNNI), the
/// matrix is repacked at load into an 8-row interleaved layout (``RepackedStorage``) and multiplied
/// from there; the file's pages are then released.
struct WeightMatrix: @unchecked Sendable {
    let name: String
    let type: GGMLType
    let rows: Int
    let columns: Int
    let data: UnsafeRawPointer
    /// The mapped file `data` points into: held so that a matrix handed from one stage to the
    /// next (see ``StageWeights/init(file:config:range:keeping:)``) keeps its mapping alive.
    let file: GGUFFile
    let rowBytes: Int
    /// The rows rearranged at load time for the active ISA's kernels (see `ck_repack`), or nil
    /// when the file layout is multiplied directly.
    let repacked: RepackedStorage?

    init(file: GGUFFile, name: String, columns: Int, rows: Int) throws(GGUFError) {
        let t = try file.requireTensor(name)
        guard t.dimensions == [columns, rows] else {
            throw .badTensorShape(path: file.path, tensor: name, expected: [columns, rows], actual: t.dimensions)
        }
        guard ck_type_supported(Int32(t.type.rawValue)) == 1, ck_vec_dot_type(Int32(t.type.rawValue)) >= 0 else {
            throw .unknownTensorType(path: file.path, tensor: name, type: t.type.rawValue)
        }
        self.name = name
        self.type = t.type
        self.rows = rows
        self.columns = columns
        self.data = file.data(of: t)
        self.file = file
        self.rowBytes = t.rowBytes
        self.repacked = RepackedStorage(type: t.type, data: self.data, rows: rows, columns: columns)
    }

    /// The activation type this matrix multiplies with.
    var activationType: Int32 { ck_vec_dot_type(Int32(type.rawValue)) }

    /// Bytes of one activation row quantized to ``activationType``.
    var activationRowBytes: Int { Int(ck_row_bytes(activationType, Int64(columns))) }

    /// Quantizes `count` float rows of `columns` elements (`stride` floats apart) into `dst`.
    func quantizeActivations(_ x: UnsafePointer<Float>, stride: Int, count: Int,
                             into dst: UnsafeMutableRawPointer, runner: any ParallelRunner) {
        let t = activationType, k = Int64(columns), rb = activationRowBytes
        runner.forEachChunk(of: count) { range, _ in
            for b in range {
                _ = ck_quantize_row(t, x + b * stride, dst + b * rb, k)
            }
        }
    }

    /// `out[b * outStride + r] = W[r] · x[b]` for every row, with `x` already quantized.
    func multiply(quantized x: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>,
                  outStride: Int, runner: any ParallelRunner) {
        runner.forEachChunk(of: rows, granularity: Self.rowGranularity) { range, _ in
            multiplyRows(range, quantized: x, count: count, into: out, outStride: outStride)
        }
    }

    /// Row ranges handed to the kernels start at multiples of this (the repacked layouts keep
    /// rows in groups of 8).
    static let rowGranularity = 16

    /// ``multiply(quantized:count:into:outStride:runner:)`` for the rows in `range` only, on the
    /// calling thread.
    func multiplyRows(_ range: Range<Int>, quantized x: UnsafeRawPointer, count: Int,
                      into out: UnsafeMutablePointer<Float>, outStride: Int) {
        let t = Int32(type.rawValue), k = Int64(columns)
        let r0 = Int64(range.lowerBound), r1 = Int64(range.upperBound)
        if let packed = repacked {
            _ = ck_matmul_repacked(t, UnsafeRawPointer(packed.pointer), x, k, r0, r1, Int64(count), out, Int64(outStride))
        } else {
            _ = ck_matmul(t, data, x, k, r0, r1, Int64(count), out, Int64(outStride))
        }
    }

    /// Multiplies the same quantized activations by several matrices (of one activation type and
    /// width) in one parallel pass: their rows form one index space, each matrix starting at a
    /// multiple of ``rowGranularity``, cut into chunks across the threads. One wait for all of
    /// them instead of one per matrix, and small matrices (keys, values) share chunks with large
    /// ones. `targets[i].1` receives matrix i's outputs with stride `targets[i].0.rows`.
    static func multiply(_ targets: [(WeightMatrix, UnsafeMutablePointer<Float>)], quantized x: UnsafeRawPointer,
                         count: Int, runner: any ParallelRunner) {
        let g = rowGranularity
        var total = 0
        for (w, _) in targets { total += (w.rows + g - 1) / g * g }
        runner.forEachChunk(of: total, granularity: g) { range, _ in
            var offset = 0
            for (w, out) in targets {
                let lo = max(range.lowerBound, offset) - offset
                let hi = min(range.upperBound, offset + w.rows) - offset
                if lo < hi { w.multiplyRows(lo..<hi, quantized: x, count: count, into: out, outStride: w.rows) }
                offset += (w.rows + g - 1) / g * g
                if offset >= range.upperBound { break }
            }
        }
    }

    /// Dequantizes row `r` into `dst` (`columns` floats).
    func dequantizeRow(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        if let packed = repacked {
            _ = ck_dequantize_repacked_row(Int32(type.rawValue), packed.pointer, Int64(columns), Int64(r), dst)
            return
        }
        _ = ck_dequantize_row(Int32(type.rawValue), data + r * rowBytes, dst, Int64(columns))
    }
}

/// A weight matrix repacked at load time into the layout of `ck_repack` (64-byte aligned heap
/// memory). Once repacked, the file's pages of the matrix are released from this process's
/// mapping (they stay in the page cache), so the matrix is resident once, not twice.
final class RepackedStorage: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    /// Repacks when the active ISA prefers it for `type`; nil otherwise (or if repacking fails).
    init?(type: GGMLType, data: UnsafeRawPointer, rows: Int, columns: Int) {
        let t = Int32(type.rawValue)
        guard ck_repack_preferred(t) == 1 else { return nil }
        let bytes = Int(ck_repack_bytes(t, Int64(rows), Int64(columns)))
        guard bytes > 0 else { return nil }
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        // In slices of about 1 MiB of the file, releasing each slice's pages as it is done, so
        // the matrix is never resident twice (the peak stays that of the file layout).
        let rowBytes = Int(ck_row_bytes(t, Int64(columns)))
        let groupBytes = bytes / ((rows + 7) / 8)
        let sliceRows = max(8, (1 << 20) / max(1, rowBytes) / 8 * 8)
        var r = 0
        while r < rows {
            let n = min(sliceRows, rows - r)
            guard ck_repack(t, data + r * rowBytes, p + (r / 8) * groupBytes, Int64(n), Int64(columns)) == 0 else {
                p.deallocate()
                return nil
            }
            r += n
            FilePages.release(data, bytes: r * rowBytes, wholePagesOnly: true)
        }
        pointer = p
        byteCount = bytes
    }

    deinit { pointer.deallocate() }
}

/// A 1-D F32 weight vector (norm weights), copied out of the mapping at load (a few KiB) so
/// that the forward pass never touches the file's pages (see ``FilePages``).
struct WeightVector: @unchecked Sendable {
    private let storage: AlignedBuffer<Float>
    let count: Int
    /// The weights.
    var values: UnsafePointer<Float> { UnsafePointer(storage.pointer) }

    init(file: GGUFFile, name: String, count: Int) throws(GGUFError) {
        let t = try file.requireTensor(name)
        guard t.dimensions == [count] else {
            throw .badTensorShape(path: file.path, tensor: name, expected: [count], actual: t.dimensions)
        }
        guard t.type == .f32 else { throw .unknownTensorType(path: file.path, tensor: name, type: t.type.rawValue) }
        storage = AlignedBuffer(capacity: count)
        storage.raw.copyMemory(from: file.data(of: t), byteCount: count * MemoryLayout<Float>.stride)
        self.count = count
    }
}

/// Residency of the model file's mapping. A stage reads the file's tensors once at load; what it
/// then multiplies from is either the mapping (file-layout matrices) or its own repacked copies.
/// Pages it no longer reads are dropped from this process's mapping (`MADV_DONTNEED` on the
/// read-only private mapping: nothing is lost, a later read faults them in again from the page
/// cache), so the resident set holds each weight once.
enum FilePages {
    /// Drops the pages overlapping `[start, start + bytes)`. With `wholePagesOnly`, only pages
    /// entirely inside the range (neighbours may still be in use); otherwise every page touching it.
    static func release(_ start: UnsafeRawPointer, bytes: Int, wholePagesOnly: Bool) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0, bytes > 0 else { return }
        let a = Int(bitPattern: start), b = a + bytes
        let lo = wholePagesOnly ? (a + page - 1) / page * page : a / page * page
        let hi = wholePagesOnly ? b / page * page : (b + page - 1) / page * page
        guard hi > lo, let p = UnsafeMutableRawPointer(bitPattern: lo) else { return }
        _ = madvise(p, hi - lo, MADV_DONTNEED)
    }

    /// After a stage has loaded: drops the header and metadata pages (parsed into the heap when
    /// the file was opened) and every page of the repacked matrices, their partial edge pages
    /// included. The file-layout matrices' pages stay (they are what the stage multiplies from;
    /// an edge page dropped next to one of them is simply faulted in again on first use).
    static func releaseLoaded(file: GGUFFile, matrices: [WeightMatrix]) {
        if file.dataOffset > 0, let header = file.fileBytes(offset: 0, count: file.dataOffset),
           let base = header.baseAddress {
            release(base, bytes: header.count, wholePagesOnly: false)
        }
        for m in matrices where m.repacked != nil {
            release(m.data, bytes: m.rowBytes * m.rows, wholePagesOnly: false)
        }
    }
}
