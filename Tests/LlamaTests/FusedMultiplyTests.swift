import CKernels
import GGUF
import TestSupport
import XCTest
@testable import Llama

/// Several matrices multiplied in one parallel pass (`WeightMatrix.multiply(_:quantized:count:runner:)`)
/// give the bits of one pass per matrix, whatever the row counts (not multiples of the kernels'
/// row groups) and the thread count.
final class FusedMultiplyTests: XCTestCase {
    let columns = 64
    let rowCounts = [24, 40, 8, 56, 3]

    func makeFile(type: Int32, seed: UInt64) throws -> GGUFFile {
        var rng = SplitMix(seed: seed)
        var b = GGUFBuilder()
        b.set("general.architecture", .string("llama"))
        for (i, rows) in rowCounts.enumerated() {
            let values = (0..<(rows * columns)).map { _ in Float.random(in: -1...1, using: &rng) }
            if type == Int32(CK_TYPE_F32) {
                b.addF32("m\(i)", dims: [columns, rows], values: values)
            } else {
                var bytes = [UInt8](repeating: 0, count: Int(ck_row_bytes(type, Int64(columns))) * rows)
                values.withUnsafeBufferPointer { v in
                    bytes.withUnsafeMutableBytes { _ = ck_quantize_row(type, v.baseAddress!, $0.baseAddress!, Int64(v.count)) }
                }
                b.addTensor("m\(i)", type: UInt32(type), dims: [columns, rows], data: bytes)
            }
        }
        return try GGUFFile(path: try b.write(name: "fused"))
    }

    func testFusedPassEqualsOnePassPerMatrix() throws {
        for type in [Int32(CK_TYPE_Q8_0), Int32(CK_TYPE_F32)] {
            let file = try makeFile(type: type, seed: UInt64(type) + 11)
            let matrices = try rowCounts.indices.map { i throws(GGUFError) in
                try WeightMatrix(file: file, name: "m\(i)", columns: columns, rows: rowCounts[i])
            }
            for count in [1, 5] {
                var rng = SplitMix(seed: 99)
                let input = (0..<(count * columns)).map { _ in Float.random(in: -1...1, using: &rng) }
                let m0 = matrices[0]
                var quantized = [UInt8](repeating: 0, count: count * m0.activationRowBytes)
                for threads in [1, 2, 3] {
                    let pool = ComputeThreadPool(threads: threads)
                    input.withUnsafeBufferPointer { x in
                        quantized.withUnsafeMutableBytes { q in
                            m0.quantizeActivations(x.baseAddress!, stride: columns, count: count, into: q.baseAddress!, runner: pool)
                        }
                    }
                    let outputs = rowCounts.map { UnsafeMutablePointer<Float>.allocate(capacity: $0 * count) }
                    let expected = rowCounts.map { UnsafeMutablePointer<Float>.allocate(capacity: $0 * count) }
                    defer { (outputs + expected).forEach { $0.deallocate() } }
                    for (i, rows) in rowCounts.enumerated() {
                        outputs[i].initialize(repeating: .nan, count: rows * count)
                        expected[i].initialize(repeating: .nan, count: rows * count)
                    }
                    quantized.withUnsafeBytes { q in
                        for (i, m) in matrices.enumerated() {
                            m.multiply(quantized: q.baseAddress!, count: count, into: expected[i], outStride: m.rows, runner: SerialRunner())
                        }
                        WeightMatrix.multiply(Array(zip(matrices, outputs)), quantized: q.baseAddress!, count: count, runner: pool)
                    }
                    for (i, rows) in rowCounts.enumerated() {
                        let got = Array(UnsafeBufferPointer(start: outputs[i], count: rows * count))
                        let want = Array(UnsafeBufferPointer(start: expected[i], count: rows * count))
                        XCTAssertFalse(want.contains { $0.isNaN }, "reference incomplete")
                        XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern),
                                       "type \(type) matrix \(i) count \(count) threads \(threads)")
                    }
                }
            }
        }
    }
}
