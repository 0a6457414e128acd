import CKernels
import XCTest

/// Half / bfloat16 conversions and the float vector helpers, on every tested instruction set.
final class FloatTests: XCTestCase {
    func testHalfToFloatAllPatternsAndRoundTrip() {
        let all = (0...0xFFFF).map { UInt16($0) }
        for isa in testedISAs() {
            withISA(isa) {
                var f = [Float](repeating: 0, count: all.count)
                ck_f16_to_f32(all, &f, Int64(all.count))
                var back = [UInt16](repeating: 0, count: all.count)
                ck_f32_to_f16(f, &back, Int64(all.count))
                var bad = 0
                for h in all {
                    let want = Float(Float16(bitPattern: h))
                    let got = f[Int(h)]
                    let ok = want.isNaN ? got.isNaN : got.bitPattern == want.bitPattern
                    let rt = want.isNaN ? (back[Int(h)] & 0x7C00 == 0x7C00 && back[Int(h)] & 0x3FF != 0) : back[Int(h)] == h
                    if !ok || !rt {
                        if bad < 3 { XCTFail("[\(isaName(isa))] half 0x\(String(h, radix: 16)): \(got) vs \(want), back 0x\(String(back[Int(h)], radix: 16))") }
                        bad += 1
                    }
                }
                XCTAssertEqual(bad, 0, "[\(isaName(isa))]")
                XCTAssertEqual(ck_f16_to_f32_1(0x3C00), 1.0)
                XCTAssertEqual(ck_f32_to_f16_1(-2.0), 0xC000)
            }
        }
    }

    func testFloatToHalfRoundsToNearestEven() {
        var rng = TestRNG(seed: 3)
        var x: [Float] = (0..<4000).map { i in
            rng.normal() * Float(pow(2.0, Double(i % 48 - 30)))  // normals, subnormals, overflow
        }
        // exact ties between two halves, and boundary values
        x += [1 + 0.5 / 1024, 1 + 1.5 / 1024, 65504, 65519.99, 65520, 70000, -65520,
              5.960464477539063e-8, 2.9802322387695312e-8, 2.98023259e-8, 1e-10, -0.0, .infinity, -.infinity]
        for isa in testedISAs() {
            withISA(isa) {
                var h = [UInt16](repeating: 0, count: x.count)
                ck_f32_to_f16(x, &h, Int64(x.count))
                for (i, v) in x.enumerated() {
                    XCTAssertEqual(h[i], Float16(v).bitPattern, "[\(isaName(isa))] \(v)")
                    XCTAssertEqual(ck_f32_to_f16_1(v), Float16(v).bitPattern, "\(v)")
                }
            }
        }
    }

    func testBFloat16() {
        let x: [Float] = [1, -2.5, 3.14159, 1e-30, 65504, .infinity, 1.00390625, 1.01171875]
        var h = [UInt16](repeating: 0, count: x.count)
        ck_f32_to_bf16(x, &h, Int64(x.count))
        // 65504 = 0x477FE000 rounds up to 0x4780. 1.00390625 = 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even mantissa (1) wins;
        // 1.01171875 = 1 + 3*2^-8 is a tie that rounds up to 1 + 2^-6.
        XCTAssertEqual(h, [0x3F80, 0xC020, 0x4049, 0x0DA2, 0x4780, 0x7F80, 0x3F80, 0x3F82])
        var back = [Float](repeating: 0, count: x.count)
        ck_bf16_to_f32(h, &back, Int64(x.count))
        XCTAssertEqual(back[1], -2.5)
        XCTAssertEqual(back[7], 1.015625)
        var nan = [UInt16](repeating: 0, count: 1)
        ck_f32_to_bf16([Float(bitPattern: 0x7F80_0001)], &nan, 1)
        XCTAssertTrue(Float(bitPattern: UInt32(nan[0]) << 16).isNaN, "signalling NaN stays NaN")
    }

    func testDotAndAxpy() {
        var rng = TestRNG(seed: 5)
        for n in [0, 1, 7, 8, 15, 16, 17, 100, 1000] {
            let a = (0..<n).map { _ in rng.normal() }, b = (0..<n).map { _ in rng.normal() }
            let ah = a.map { Float16($0).bitPattern }
            let af = ah.map { Float(Float16(bitPattern: $0)) }
            let ref = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let refh = zip(af, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let mag = zip(a, b).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) } + 1e-30
            for isa in testedISAs() {
                withISA(isa) {
                    XCTAssertEqual(Double(ck_dot_f32(a, b, Int64(n))), ref, accuracy: 1e-6 * mag, "n=\(n) [\(isaName(isa))]")
                    XCTAssertEqual(Double(ck_dot_f16_f32(ah, b, Int64(n))), refh, accuracy: 1e-6 * mag, "n=\(n)")
                    var y = b
                    ck_axpy_f32(0.75, a, &y, Int64(n))
                    for i in 0..<n { XCTAssertEqual(y[i], b[i] + 0.75 * a[i], accuracy: 1e-6 * (abs(b[i]) + abs(a[i])), "axpy") }
                    var yh = b
                    ck_axpy_f16_f32(-1.5, ah, &yh, Int64(n))
                    for i in 0..<n { XCTAssertEqual(yh[i], b[i] - 1.5 * af[i], accuracy: 1e-6 * (abs(b[i]) + 2 * abs(af[i])), "axpy f16") }
                }
            }
        }
    }

    func testISASelection() {
        let best = ck_isa_best()
        XCTAssertEqual(ck_set_isa(Int32(CK_ISA_SCALAR)), Int32(CK_ISA_SCALAR))
        XCTAssertEqual(ck_isa_active(), Int32(CK_ISA_SCALAR))
        XCTAssertEqual(ck_set_isa(Int32(CK_ISA_NEON)), best, "unavailable ISAs clamp to the best one")
        XCTAssertEqual(ck_isa_active(), best)
        XCTAssertEqual(isaName(Int32(CK_ISA_AVX2)), "avx2")
        XCTAssertEqual(isaName(Int32(CK_ISA_AVX512)), "avx512")
        #if arch(x86_64)
        // the development and CI machines have AVX2 (or AVX-512); a scalar-only result would hide the SIMD path
        XCTAssertTrue(isX86SIMD(best), "best ISA is \(isaName(best))")
        if best == Int32(CK_ISA_AVX512) {
            XCTAssertEqual(ck_set_isa(Int32(CK_ISA_AVX2)), Int32(CK_ISA_AVX2), "an AVX-512 CPU can still run the AVX2 table")
        } else {
            XCTAssertEqual(ck_set_isa(Int32(CK_ISA_AVX512)), best, "no AVX-512 table without the CPU for it")
        }
        XCTAssertEqual(ck_set_isa(best), best)
        #elseif arch(arm64)
        XCTAssertEqual(best, Int32(CK_ISA_NEON))
        #endif
    }
}
