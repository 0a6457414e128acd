import CKernels
import XCTest

/// ck_attention_f16 is the composition the engine used before (dot per key, softmax, rounding to
/// half, axpy per key), bit for bit on every ISA, for head sizes with and without leftovers.
final class AttentionTests: XCTestCase {
    func composed(q: [Float], keys: [UInt16], values: [UInt16], stride: Int, n: Int, hd: Int, scale: Float) -> [Float] {
        var sc = (0..<n).map { j in
            keys.withUnsafeBufferPointer { ck_dot_f16_f32($0.baseAddress! + j * stride, q, Int64(hd)) } * scale
        }
        ck_softmax_f32(&sc, Int64(n))
        var h = [UInt16](repeating: 0, count: n)
        ck_f32_to_f16(sc, &h, Int64(n))
        ck_f16_to_f32(h, &sc, Int64(n))
        var out = [Float](repeating: 0, count: hd)
        for j in 0..<n {
            values.withUnsafeBufferPointer { ck_axpy_f16_f32(sc[j], $0.baseAddress! + j * stride, &out, Int64(hd)) }
        }
        return out
    }

    func testFusedEqualsComposition() {
        var rng = TestRNG(seed: 77)
        for (hd, heads) in [(64, 3), (128, 2), (48, 2)] {
            let stride = hd * heads
            for n in [1, 2, 7, 33] {
                let keys = (0..<(n * stride)).map { _ in ck_f32_to_f16_1(rng.normal(1)) }
                let values = (0..<(n * stride)).map { _ in ck_f32_to_f16_1(rng.normal(1)) }
                var q = (0..<hd).map { _ in rng.normal(2) }
                var qh = [UInt16](repeating: 0, count: hd)
                ck_f32_to_f16(q, &qh, Int64(hd))
                ck_f16_to_f32(qh, &q, Int64(hd))
                let scale = 1 / Float(hd).squareRoot()
                for isa in testedISAs() {
                    withISA(isa) {
                        for head in 0..<heads {
                            let off = head * hd
                            let want = composed(q: q, keys: Array(keys[off...]), values: Array(values[off...]),
                                                stride: stride, n: n, hd: hd, scale: scale)
                            var got = [Float](repeating: .nan, count: hd)
                            var sc = [Float](repeating: .nan, count: n)
                            keys.withUnsafeBufferPointer { k in
                                values.withUnsafeBufferPointer { v in
                                    ck_attention_f16(q, k.baseAddress! + off, v.baseAddress! + off, Int64(stride), Int64(n),
                                                     Int64(hd), scale, &sc, &got)
                                }
                            }
                            XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern),
                                           "hd \(hd) n \(n) head \(head) [\(isaName(isa))]")
                            XCTAssertEqual(sc.reduce(0, +), 1, accuracy: 0.01, "probabilities left in scores")
                        }
                    }
                }
            }
        }
    }
}
