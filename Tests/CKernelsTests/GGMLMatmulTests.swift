import CKernels
import XCTest

/// ck_quantize_row and ck_matmul against ggml itself: fixtures made with the ggml libraries that
/// llama-cpp-python bundles (quantize_row_q8_*_ref and ggml_vec_dot_*, SIMD and generic builds).
final class GGMLMatmulTests: XCTestCase {
    struct Case {
        let wtype: QType
        let k: Int, rows: Int, nb: Int
        let weights: [UInt8]
        let activations: [Float]
        let quantized: [UInt8]
        let ggmlSIMD: [Float], ggmlGeneric: [Float]  // [b * rows + r]
    }

    static func load(_ name: String) throws -> Case {
        let path = QuantFixtures.directory + "/mm_\(name).bin"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FixtureError(description: "fixture \(path) missing; run Scripts/fixtures/make_quant_fixtures.py")
        }
        let b = [UInt8](data)
        func u32(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24 }
        func floats(_ o: Int, _ n: Int) -> [Float] {
            (0..<n).map { Float(bitPattern: UInt32(truncatingIfNeeded: u32(o + 4 * $0))) }
        }
        guard b.count >= 28, String(decoding: b[0..<4], as: UTF8.self) == "CKQM" else {
            throw FixtureError(description: "\(path): bad header")
        }
        let wt = Int32(u32(4)), k = u32(8), rows = u32(12), nb = u32(16), wb = u32(20), xb = u32(24)
        var o = 28
        guard b.count == o + wb + 4 * nb * k + xb + 8 * nb * rows else {
            throw FixtureError(description: "\(path): size does not match header")
        }
        let w = Array(b[o..<(o + wb)]); o += wb
        let act = floats(o, nb * k); o += 4 * nb * k
        let q = Array(b[o..<(o + xb)]); o += xb
        let simd = floats(o, nb * rows); o += 4 * nb * rows
        let gen = floats(o, nb * rows)
        return Case(wtype: QType(id: wt, name: name), k: k, rows: rows, nb: nb, weights: w, activations: act,
                    quantized: q, ggmlSIMD: simd, ggmlGeneric: gen)
    }

    func testMatchesGGML() throws {
        for wt in QType.weightTypes {
            let c = try Self.load(wt.name)
            XCTAssertEqual(c.wtype.id, wt.id)
            let xt = QType(id: ck_vec_dot_type(wt.id), name: "act")
            // magnitudes sum |w_i x_i| for the tolerance
            let wf = MatmulTests.dequant(wt, c.weights, c.rows * c.k)
            let xf = MatmulTests.dequant(xt, c.quantized, c.nb * c.k)
            for isa in testedISAs() {
                withISA(isa) {
                    var q = [UInt8](repeating: 0, count: c.quantized.count)
                    XCTAssertEqual(ck_quantize_row(xt.id, c.activations, &q, Int64(c.nb * c.k)), 0)
                    XCTAssertTrue(q == c.quantized, "\(wt): activations quantized differently from ggml [\(isaName(isa))]")
                    var out = [Float](repeating: .nan, count: c.nb * c.rows)
                    XCTAssertEqual(ck_matmul(wt.id, c.weights, c.quantized, Int64(c.k), 0, Int64(c.rows), Int64(c.nb),
                                             &out, Int64(c.rows)), 0)
                    // one activation at a time too (the decode kernels), on an odd row range
                    let xrow = c.quantized.count / c.nb
                    for b in 0..<c.nb {
                        var single = [Float](repeating: .nan, count: c.rows)
                        let xb = Array(c.quantized[(b * xrow)..<((b + 1) * xrow)])
                        XCTAssertEqual(ck_matmul(wt.id, c.weights, xb, Int64(c.k), 1, Int64(c.rows), 1, &single, 0), 0)
                        XCTAssertTrue(single[0].isNaN, "\(wt): row 0 is outside the range")
                        for r in 0..<c.rows {
                            var mag = 0.0
                            for i in 0..<c.k { mag += abs(Double(wf[r * c.k + i]) * Double(xf[b * c.k + i])) }
                            let tol = 1e-6 * mag + 1e-7  // observed deviations are ~1e-8 * mag, like ggml SIMD vs generic
                            let want = (simd: Double(c.ggmlSIMD[b * c.rows + r]), generic: Double(c.ggmlGeneric[b * c.rows + r]))
                            let got = Double(out[b * c.rows + r])
                            XCTAssertEqual(got, want.simd, accuracy: tol, "\(wt) b=\(b) r=\(r) vs ggml SIMD [\(isaName(isa))]")
                            XCTAssertEqual(got, want.generic, accuracy: tol, "\(wt) b=\(b) r=\(r) vs ggml generic [\(isaName(isa))]")
                            if r > 0 {
                                XCTAssertEqual(Double(single[r]), want.simd, accuracy: tol, "\(wt) nb=1 b=\(b) r=\(r) [\(isaName(isa))]")
                            }
                        }
                    }
                }
            }
        }
    }
}
