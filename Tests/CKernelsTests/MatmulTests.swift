import CKernels
import Foundation
import XCTest

/// ck_matmul for every weight type: scalar path, SIMD path and a float reference
/// (dequantized weights dot dequantized activations, in Double) must agree.
final class MatmulTests: XCTestCase {
    /// Byte offsets of the half-precision scale fields inside one block of each quantized type.
    static func halfFields(_ t: QType) -> [Int] {
        switch t.name {
        case "q4_0", "q5_0", "q8_0": return [0]
        case "q4_1", "q5_1", "q4_K", "q5_K": return [0, 2]
        case "q2_K": return [80, 82]
        case "q3_K": return [108]
        case "q6_K": return [208]
        default: return []
        }
    }

    /// Random weight rows of type t: random quant bits with sane half scales, or random floats.
    static func randomWeights(_ t: QType, rows: Int, k: Int, rng: inout TestRNG) -> [UInt8] {
        let n = rows * k
        switch t.name {
        case "f32":
            return (0..<n).flatMap { _ in withUnsafeBytes(of: rng.normal(0.1).bitPattern.littleEndian) { Array($0) } }
        case "f16":
            return (0..<n).flatMap { _ in withUnsafeBytes(of: Float16(rng.normal(0.1)).bitPattern.littleEndian) { Array($0) } }
        case "bf16":
            return (0..<n).flatMap { _ in
                withUnsafeBytes(of: UInt16(truncatingIfNeeded: rng.normal(0.1).bitPattern >> 16).littleEndian) { Array($0) }
            }
        default:
            var raw = (0..<t.rowBytes(n)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let fields = halfFields(t)
            precondition(!fields.isEmpty, "no layout for \(t)")
            for b in 0..<(n / t.blockElements) {
                for f in fields {
                    let v = Float.random(in: 0.0005...0.02, using: &rng) * (Bool.random(using: &rng) ? 1 : -1)
                    let h = Float16(v).bitPattern
                    raw[b * t.blockBytes + f] = UInt8(h & 0xFF)
                    raw[b * t.blockBytes + f + 1] = UInt8(h >> 8)
                }
            }
            return raw
        }
    }

    static func dequant(_ t: QType, _ raw: [UInt8], _ n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n)
        precondition(ck_dequantize_row(t.id, raw, &out, Int64(n)) == 0)
        return out
    }

    static func half(_ raw: [UInt8], _ o: Int) -> Double {
        Double(ck_f16_to_f32_1(UInt16(raw[o]) | UInt16(raw[o + 1]) << 8))
    }

    /// Reference dot products and their magnitudes sum |w_i * x_i|, indexed [b][r].
    static func reference(_ wt: QType, w: [UInt8], x: [UInt8], rows: Int, k: Int, nb: Int)
        -> (value: [[Double]], magnitude: [[Double]]) {
        let xt = QType(id: ck_vec_dot_type(wt.id), name: "act")
        let wf = dequant(wt, w, rows * k), xf = dequant(xt, x, nb * k)
        var value = [[Double]](repeating: [Double](repeating: 0, count: rows), count: nb)
        var mag = value
        for b in 0..<nb {
            for r in 0..<rows {
                var s = 0.0, m = 0.0
                for i in 0..<k {
                    let p = Double(wf[r * k + i]) * Double(xf[b * k + i])
                    s += p; m += abs(p)
                }
                if xt.id == QType.q8_1.id {
                    // ggml uses the stored half s = d*sum(q) for the min term: m * s instead of
                    // m * d * sum(q); apply the same (the weight min sits at byte 2 of its block).
                    for blk in 0..<(k / 32) {
                        let wo = (r * k / 32 + blk) * wt.blockBytes, xo = (b * k / 32 + blk) * 36
                        let mw = half(w, wo + 2), dy = half(x, xo), sy = half(x, xo + 2)
                        let sumq = (0..<32).reduce(0) { $0 + Int(Int8(bitPattern: x[xo + 4 + $1])) }
                        s += mw * (sy - dy * Double(sumq))
                        m += abs(mw * sy)
                    }
                }
                value[b][r] = s; mag[b][r] = m
            }
        }
        return (value, mag)
    }

    func run(_ wt: QType, k: Int, nb: Int, seed: UInt64) {
        let rows = 37, r0 = 4, r1 = 37, stride = rows + 3  // odd row count: pairs + a single row
        var rng = TestRNG(seed: seed)
        let w = Self.randomWeights(wt, rows: rows, k: k, rng: &rng)
        let xt = QType(id: ck_vec_dot_type(wt.id), name: "act")
        // activations of moderate, varying magnitude (all quants non-trivial)
        let xfloat = (0..<(nb * k)).map { i in rng.normal(1 + Float((i / 32) % 5)) }
        var x = [UInt8](repeating: 0, count: xt.rowBytes(nb * k))
        XCTAssertEqual(ck_quantize_row(xt.id, xfloat, &x, Int64(nb * k)), 0)
        let ref = Self.reference(wt, w: w, x: x, rows: rows, k: k, nb: nb)

        let sentinel: Float = -777
        var results: [(Int32, [Float])] = []
        for isa in testedISAs() {
            let out = withISA(isa) { () -> [Float] in
                var out = [Float](repeating: sentinel, count: stride * nb + 2)
                XCTAssertEqual(ck_matmul(wt.id, w, x, Int64(k), Int64(r0), Int64(r1), Int64(nb), &out, Int64(stride)), 0)
                return out
            }
            let what = "\(wt) k=\(k) nb=\(nb) [\(isaName(isa))]"
            var bad = 0
            for b in 0..<nb {
                for r in 0..<stride {
                    let got = out[b * stride + r]
                    if r < r0 || r >= r1 {
                        XCTAssertEqual(got, sentinel, "\(what): wrote outside the row range at b=\(b) r=\(r)")
                        continue
                    }
                    let want = ref.value[b][r], tol = 2e-6 * ref.magnitude[b][r] + 1e-30
                    if !(abs(Double(got) - want) <= tol) {
                        if bad < 3 { XCTFail("\(what) b=\(b) r=\(r): got \(got), reference \(want) (tolerance \(tol))") }
                        bad += 1
                    }
                }
            }
            XCTAssertEqual(out[stride * nb], sentinel, "\(what): wrote past the end")
            XCTAssertEqual(bad, 0, "\(what): \(bad) outputs off")
            results.append((isa, out))
        }
        // SIMD vs scalar: same integer sums, only float accumulation order differs.
        if results.count == 2 {
            for b in 0..<nb {
                for r in r0..<r1 {
                    let a = Double(results[0].1[b * stride + r]), s = Double(results[1].1[b * stride + r])
                    XCTAssertLessThanOrEqual(abs(a - s), 2e-6 * ref.magnitude[b][r] + 1e-30,
                                             "\(wt) k=\(k) nb=\(nb) scalar vs \(isaName(results[1].0)) b=\(b) r=\(r)")
                }
            }
        }
    }

    func testAllTypesAllShapes() {
        var seed: UInt64 = 100
        for wt in QType.weightTypes {
            var shapes = [(256, 1), (512, 3), (1536, 8)]
            if wt.blockElements == 32 { shapes.append((96, 5)) }
            if wt.isKQuant { shapes.append((256, 13)) }  // activation groups of 8 + 4 + 1
            if wt.blockElements == 1 { shapes += [(100, 3), (7, 2), (100, 1), (120, 1)] }
            for (k, nb) in shapes {
                seed += 1
                run(wt, k: k, nb: nb, seed: seed)
            }
        }
    }

    func testRejectsBadArguments() {
        let w = [UInt8](repeating: 0, count: 4096), x = [UInt8](repeating: 0, count: 4096)
        var out = [Float](repeating: 0, count: 64)
        XCTAssertEqual(ck_matmul(QType.q4_K.id, w, x, 128, 0, 1, 1, &out, 1), -1, "k not a multiple of 256")
        XCTAssertEqual(ck_matmul(QType.q8_1.id, w, x, 32, 0, 1, 1, &out, 1), -1, "q8_1 is no weight type")
        XCTAssertEqual(ck_matmul(4, w, x, 32, 0, 1, 1, &out, 1), -1)
        XCTAssertEqual(ck_matmul(QType.q4_0.id, w, x, 32, 3, 2, 1, &out, 4), -1, "r1 < r0")
        XCTAssertEqual(ck_matmul(QType.q4_0.id, w, x, 32, 0, 4, 2, &out, 3), -1, "stride < r1")
        XCTAssertEqual(ck_matmul(QType.q4_0.id, w, x, 32, 0, 4, 2, &out, 4), 0)
    }
}

/// ck_matmul is a pure function: rows split across threads give the single-threaded result.
final class MatmulThreadingTests: XCTestCase {
    func testRowSplitAcrossThreadsMatchesOneCall() {
        let wt = QType.q4_1, k = 576, rows = 96, nb = 5
        var rng = TestRNG(seed: 77)
        let w = MatmulTests.randomWeights(wt, rows: rows, k: k, rng: &rng)
        let xf = (0..<(nb * k)).map { _ in rng.normal() }
        var x = [UInt8](repeating: 0, count: QType.q8_1.rowBytes(nb * k))
        XCTAssertEqual(ck_quantize_row(QType.q8_1.id, xf, &x, Int64(nb * k)), 0)
        var whole = [Float](repeating: 0, count: rows * nb)
        XCTAssertEqual(ck_matmul(wt.id, w, x, Int64(k), 0, Int64(rows), Int64(nb), &whole, Int64(rows)), 0)
        let parts = 8
        let xq = x
        var split = [Float](repeating: 0, count: rows * nb)
        split.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let base = out.baseAddress
            DispatchQueue.concurrentPerform(iterations: parts) { p in
                let r0 = rows * p / parts, r1 = rows * (p + 1) / parts
                _ = ck_matmul(wt.id, w, xq, Int64(k), Int64(r0), Int64(r1), Int64(nb), base, Int64(rows))
            }
        }
        XCTAssertEqual(split, whole)
    }
}
