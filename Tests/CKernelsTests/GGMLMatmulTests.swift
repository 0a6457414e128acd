import CKernels
import XCTest

/// ck_quantize_row and ck_matmul against ggml itself: fixtures made with the ggml libraries that
/// llama-cpp-python bundles (quantize_row_q8_*_ref and the x86 runtime quantize_row_q8_*,
/// ggml_vec_dot_* in the AVX2 build and the generic one).
final class GGMLMatmulTests: XCTestCase {
    struct Case {
        let wtype: QType
        let k: Int, rows: Int, nb: Int
        let weights: [UInt8]
        let activations: [Float]
        /// Activations quantized by ggml's reference quantizer / its x86 (AVX2) runtime quantizer.
        let quantizedRef: [UInt8], quantizedRuntime: [UInt8]
        /// ggml's SIMD vec_dot on `quantizedRuntime`, its generic vec_dot on `quantizedRef`; [b * rows + r].
        let ggmlSIMD: [Float], ggmlGeneric: [Float]
    }

    /// Weight types whose AVX2 kernels reproduce ggml's AVX2 vec_dot bit for bit (F32 only for row
    /// lengths that are multiples of 32). F16 uses register tiles with one chain per output (as
    /// llama.cpp's own F16 prefill does not use vec_dot either): within the tolerance below.
    static let bitExactOnAVX2: Set<String> = [
        "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
        "f32",  // the fixture row length is a multiple of 32
    ]

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
        guard b.count == o + wb + 4 * nb * k + 2 * xb + 8 * nb * rows else {
            throw FixtureError(description: "\(path): size does not match header (regenerate the fixtures)")
        }
        let w = Array(b[o..<(o + wb)]); o += wb
        let act = floats(o, nb * k); o += 4 * nb * k
        let qRef = Array(b[o..<(o + xb)]); o += xb
        let qRun = Array(b[o..<(o + xb)]); o += xb
        let simd = floats(o, nb * rows); o += 4 * nb * rows
        let gen = floats(o, nb * rows)
        return Case(wtype: QType(id: wt, name: name), k: k, rows: rows, nb: nb, weights: w, activations: act,
                    quantizedRef: qRef, quantizedRuntime: qRun, ggmlSIMD: simd, ggmlGeneric: gen)
    }

    func testMatchesGGML() throws {
        for wt in QType.weightTypes {
            let c = try Self.load(wt.name)
            XCTAssertEqual(c.wtype.id, wt.id)
            let xt = QType(id: ck_vec_dot_type(wt.id), name: "act")
            // magnitudes sum |w_i x_i| for the tolerance
            let wf = MatmulTests.dequant(wt, c.weights, c.rows * c.k)
            let xf = MatmulTests.dequant(xt, c.quantizedRef, c.nb * c.k)
            for isa in testedISAs() {
                withISA(isa) {
                    // AVX2 follows ggml's x86 runtime (quantizer and vec_dot); scalar (and NEON) its reference.
                    let avx2 = isX86SIMD(isa)
                    let wantQ = avx2 ? c.quantizedRuntime : c.quantizedRef
                    let wantOut = avx2 ? c.ggmlSIMD : c.ggmlGeneric
                    let exact = avx2 && Self.bitExactOnAVX2.contains(wt.name)
                    var q = [UInt8](repeating: 0, count: wantQ.count)
                    XCTAssertEqual(ck_quantize_row(xt.id, c.activations, &q, Int64(c.nb * c.k)), 0)
                    XCTAssertTrue(q == wantQ, "\(wt): activations quantized differently from ggml [\(isaName(isa))]")
                    var out = [Float](repeating: .nan, count: c.nb * c.rows)
                    XCTAssertEqual(ck_matmul(wt.id, c.weights, wantQ, Int64(c.k), 0, Int64(c.rows), Int64(c.nb),
                                             &out, Int64(c.rows)), 0)
                    // one activation at a time too (the decode kernels), on an odd row range
                    let xrow = wantQ.count / c.nb
                    for b in 0..<c.nb {
                        var single = [Float](repeating: .nan, count: c.rows)
                        let xb = Array(wantQ[(b * xrow)..<((b + 1) * xrow)])
                        XCTAssertEqual(ck_matmul(wt.id, c.weights, xb, Int64(c.k), 1, Int64(c.rows), 1, &single, 0), 0)
                        XCTAssertTrue(single[0].isNaN, "\(wt): row 0 is outside the range")
                        for r in 0..<c.rows {
                            let got = out[b * c.rows + r], want = wantOut[b * c.rows + r]
                            if r > 0 {
                                XCTAssertEqual(single[r].bitPattern, got.bitPattern, "\(wt) nb=1 vs batched b=\(b) r=\(r) [\(isaName(isa))]")
                            }
                            if exact {
                                XCTAssertEqual(got.bitPattern, want.bitPattern,
                                               "\(wt) b=\(b) r=\(r): \(got) vs ggml AVX2 \(want), not bit-identical")
                                continue
                            }
                            var mag = 0.0
                            for i in 0..<c.k { mag += abs(Double(wf[r * c.k + i]) * Double(xf[b * c.k + i])) }
                            let tol = 1e-6 * mag + 1e-7  // observed deviations are ~1e-8 * mag, like ggml SIMD vs generic
                            XCTAssertEqual(Double(got), Double(want), accuracy: tol, "\(wt) b=\(b) r=\(r) vs ggml [\(isaName(isa))]")
                        }
                    }
                }
            }
        }
    }

    /// ck_dot_f16_f32 / ck_dot_f32 on AVX2 reproduce ggml_vec_dot_f16 / _f32 (AVX2) bit for bit (the
    /// engine's attention scores use them as llama.cpp does while decoding).
    func testFloatDotsMatchGGMLVecDot() throws {
        guard isX86SIMD(ck_isa_best()) else { throw XCTSkip("needs AVX2") }
        for name in ["f16", "f32"] {
            let c = try Self.load(name)
            let rowBytes = c.weights.count / c.rows
            for b in 0..<c.nb {
                for r in 0..<c.rows {
                    let w = Array(c.weights[(r * rowBytes)..<((r + 1) * rowBytes)])
                    let got: Float
                    if name == "f16" {
                        // ggml multiplies F16 by F16: the activation rounded to half (exact as float)
                        let h = c.activations[(b * c.k)..<((b + 1) * c.k)].map { Float(Float16($0)) }
                        let wh = (0..<c.k).map { UInt16(w[2 * $0]) | UInt16(w[2 * $0 + 1]) << 8 }
                        got = ck_dot_f16_f32(wh, h, Int64(c.k))
                    } else {
                        let wf = (0..<c.k).map { i in
                            Float(bitPattern: UInt32(w[4 * i]) | UInt32(w[4 * i + 1]) << 8 | UInt32(w[4 * i + 2]) << 16 | UInt32(w[4 * i + 3]) << 24)
                        }
                        got = ck_dot_f32(wf, Array(c.activations[(b * c.k)..<((b + 1) * c.k)]), Int64(c.k))
                    }
                    let want = c.ggmlSIMD[b * c.rows + r]
                    XCTAssertEqual(got.bitPattern, want.bitPattern, "\(name) b=\(b) r=\(r): \(got) vs ggml \(want)")
                }
            }
        }
    }
}
