import CKernels
import GGUF

/// A weight matrix inside the mapped model file: `rows` rows of `columns` elements of `type`.
///
/// `y = W x` for a batch of activations is computed on the quantized blocks directly: activations
/// are first quantized to the type the weight type pairs with (as llama.cpp does), then rows are
/// split across threads.
struct WeightMatrix: @unchecked Sendable {
    let name: String
    let type: GGMLType
    let rows: Int
    let columns: Int
    let data: UnsafeRawPointer
    let rowBytes: Int

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
        self.rowBytes = t.rowBytes
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
        let t = Int32(type.rawValue), k = Int64(columns)
        let w = data
        runner.forEachChunk(of: rows, granularity: 16) { range, _ in
            _ = ck_matmul(t, w, x, k, Int64(range.lowerBound), Int64(range.upperBound), Int64(count),
                          out, Int64(outStride))
        }
    }

    /// Dequantizes row `r` into `dst` (`columns` floats).
    func dequantizeRow(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        _ = ck_dequantize_row(Int32(type.rawValue), data + r * rowBytes, dst, Int64(columns))
    }
}

/// A 1-D F32 weight vector (norm weights).
struct WeightVector: @unchecked Sendable {
    let values: UnsafePointer<Float>
    let count: Int

    init(file: GGUFFile, name: String, count: Int) throws(GGUFError) {
        let t = try file.requireTensor(name)
        guard t.dimensions == [count] else {
            throw .badTensorShape(path: file.path, tensor: name, expected: [count], actual: t.dimensions)
        }
        guard t.type == .f32 else { throw .unknownTensorType(path: file.path, tensor: name, type: t.type.rawValue) }
        // GGUF data is aligned (>= 32 bytes), so the float view is aligned.
        values = file.data(of: t).assumingMemoryBound(to: Float.self)
        self.count = count
    }
}
