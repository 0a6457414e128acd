import CKernels
import XCTest

/// Activation quantization: Q8_0 against gguf-py, Q8_1 / Q8_K / F16 / BF16 against plain Swift
/// transcriptions of ggml's reference quantizers.
final class QuantizeTests: XCTestCase {
    /// Activations of varied magnitude, with ties, zeros and a huge block.
    static func activations(_ n: Int, seed: UInt64) -> [Float] {
        var rng = TestRNG(seed: seed)
        var x = [Float](repeating: 0, count: n)
        for b in 0..<(n / 32) {
            let scale = Float(pow(2.0, Double.random(in: -8...6, using: &rng)))
            for i in 0..<32 { x[b * 32 + i] = rng.normal(scale) }
        }
        if n >= 128 {
            for i in 32..<64 { x[i] = Float(i - 48) + 0.5 }  // many halves
            x[32] = 127
            for i in 64..<96 { x[i] = 0 }
        }
        return x
    }

    /// One block of 32 as Q8_0 and Q8_1 quantize it: scale d = amax / 127 and the rounded values
    /// (see ``refQ8_0(_:runtime:)`` for the two rounding rules).
    static func refQ8Block(_ blk: ArraySlice<Float>, runtime: Bool) -> (d: Float, q: [Int8]) {
        let amax = blk.map { abs($0) }.max() ?? 0
        let d = amax / 127
        let id: Float = runtime ? (amax != 0 ? 127 / amax : 0) : (d != 0 ? 1 / d : 0)
        return (d, blk.map { Int8(($0 * id).rounded(runtime ? .toNearestOrEven : .toNearestOrAwayFromZero)) })
    }

    /// ggml's reference Q8_0 (`runtime: false`: multiplier 1/d, ties away from zero) or its x86
    /// AVX2 runtime quantizer (`runtime: true`: multiplier 127/amax, ties to even).
    static func refQ8_0(_ x: [Float], runtime: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        for b in 0..<(x.count / 32) {
            let (d, q) = refQ8Block(x[(b * 32)..<(b * 32 + 32)], runtime: runtime)
            let h = Float16(d).bitPattern
            out += [UInt8(h & 0xFF), UInt8(h >> 8)]
            out += q.map { UInt8(bitPattern: $0) }
        }
        return out
    }

    /// Q8_1 as ``refQ8_0(_:runtime:)``, plus s = half(d * sum q).
    static func refQ8_1(_ x: [Float], runtime: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        for b in 0..<(x.count / 32) {
            let (d, q) = refQ8Block(x[(b * 32)..<(b * 32 + 32)], runtime: runtime)
            let sum = q.reduce(0) { $0 + Int($1) }
            let h = Float16(d).bitPattern, s = Float16(Float(sum) * d).bitPattern
            out += [UInt8(h & 0xFF), UInt8(h >> 8), UInt8(s & 0xFF), UInt8(s >> 8)]
            out += q.map { UInt8(bitPattern: $0) }
        }
        return out
    }

    static func refQ8_K(_ x: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        for b in 0..<(x.count / 256) {
            let blk = Array(x[(b * 256)..<(b * 256 + 256)])
            var amax: Float = 0, maxv: Float = 0
            for v in blk where abs(v) > amax { amax = abs(v); maxv = v }
            var d: Float = 0
            var q = [Int8](repeating: 0, count: 256)
            var bsums = [Int16](repeating: 0, count: 16)
            if amax != 0 {
                let iscale = -127 / maxv
                for i in 0..<256 { q[i] = Int8(min(127, Int((iscale * blk[i]).rounded(.toNearestOrEven)))) }
                for g in 0..<16 { bsums[g] = Int16(q[(g * 16)..<(g * 16 + 16)].reduce(0) { $0 + Int($1) }) }
                d = 1 / iscale
            }
            let db = d.bitPattern
            out += (0..<4).map { UInt8((db >> (8 * $0)) & 0xFF) }
            out += q.map { UInt8(bitPattern: $0) }
            for s in bsums { out += [UInt8(UInt16(bitPattern: s) & 0xFF), UInt8(UInt16(bitPattern: s) >> 8)] }
        }
        return out
    }

    func quantize(_ t: QType, _ x: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0xAB, count: t.rowBytes(x.count))
        XCTAssertEqual(ck_quantize_row(t.id, x, &out, Int64(x.count)), 0, "\(t)")
        return out
    }

    func assertBytesEqual(_ got: [UInt8], _ want: [UInt8], _ what: String) {
        XCTAssertEqual(got.count, want.count, what)
        let diffs = zip(got, want).enumerated().filter { $0.element.0 != $0.element.1 }
        if let first = diffs.first {
            XCTFail("\(what): \(diffs.count) bytes differ, first at \(first.offset): \(first.element.0) vs \(first.element.1)")
        }
    }

    func testQ8_0MatchesGGUFPy() throws {
        let fx = try QuantFixtures.load("act_q8_0.bin")
        XCTAssertEqual(fx.type, QType.q8_0.id)
        // AVX2 follows ggml's x86 runtime quantizer instead (GGMLMatmulTests, testQ8_0Q8_1Q8_KMatchReference)
        for isa in testedISAs() where !isX86SIMD(isa) {
            withISA(isa) { assertBytesEqual(quantize(.q8_0, fx.floats), fx.blob, "q8_0 [\(isaName(isa))] vs gguf-py") }
        }
    }

    /// Scalar (and NEON) quantize as ggml's reference quantizers, AVX2 as ggml's x86 runtime ones.
    func testQ8_0Q8_1Q8_KMatchReference() {
        let x = Self.activations(2048, seed: 7)
        let rk = Self.refQ8_K(x)
        XCTAssertNotEqual(Self.refQ8_0(x), Self.refQ8_0(x, runtime: true), "the data has ties that tell them apart")
        for isa in testedISAs() {
            let runtime = isX86SIMD(isa)
            let r0 = Self.refQ8_0(x, runtime: runtime), r1 = Self.refQ8_1(x, runtime: runtime)
            withISA(isa) {
                assertBytesEqual(quantize(.q8_0, x), r0, "q8_0 [\(isaName(isa))]")
                assertBytesEqual(quantize(.q8_1, x), r1, "q8_1 [\(isaName(isa))]")
                assertBytesEqual(quantize(.q8_K, x), rk, "q8_K [\(isaName(isa))]")
            }
        }
    }

    func testQ8_KNegativeMaxAndZeroBlock() {
        var x = [Float](repeating: 0, count: 512)
        for i in 0..<256 { x[i] = Float(i % 17) * 0.01 }
        x[100] = -3  // largest magnitude is negative: d must come out positive
        let q = quantize(.q8_K, x)
        XCTAssertEqual(q, Self.refQ8_K(x))
        var back = [Float](repeating: 0, count: 512)
        XCTAssertEqual(ck_dequantize_row(QType.q8_K.id, q, &back, 512), 0)
        XCTAssertEqual(back[100], -3, accuracy: 1e-6)
        XCTAssertEqual(Array(back[256...]), [Float](repeating: 0, count: 256))
        XCTAssertTrue(q[(292 + 4)..<(2 * 292)].allSatisfy { $0 == 0 }, "zero block: quants and bsums zero")
    }

    func testFloatActivationTypes() {
        var rng = TestRNG(seed: 11)
        let x = (0..<200).map { _ in rng.normal(100) }
        for isa in testedISAs() {
            withISA(isa) {
                let h = quantize(.f16, x)
                let hr = x.flatMap { v -> [UInt8] in let b = Float16(v).bitPattern; return [UInt8(b & 0xFF), UInt8(b >> 8)] }
                assertBytesEqual(h, hr, "f16 [\(isaName(isa))]")
                let b = quantize(.bf16, x)
                let br = x.flatMap { v -> [UInt8] in
                    let u = v.bitPattern
                    let r = UInt16((u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
                    return [UInt8(r & 0xFF), UInt8(r >> 8)]
                }
                assertBytesEqual(b, br, "bf16 [\(isaName(isa))]")
                let f = quantize(.f32, x)
                XCTAssertEqual(f, x.flatMap { v in (0..<4).map { UInt8((v.bitPattern >> (8 * $0)) & 0xFF) } })
            }
        }
    }

    func testQuantizeRejectsBadInput() {
        var out = [UInt8](repeating: 0, count: 4096)
        let x = [Float](repeating: 1, count: 512)
        XCTAssertEqual(ck_quantize_row(QType.q8_0.id, x, &out, 33), -1)
        XCTAssertEqual(ck_quantize_row(QType.q8_K.id, x, &out, 32), -1)
        XCTAssertEqual(ck_quantize_row(QType.q4_0.id, x, &out, 32), -1, "weight types are not activation types")
    }
}
