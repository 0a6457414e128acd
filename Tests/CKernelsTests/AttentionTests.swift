import CKernels
import Foundation
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

/// ck_attention_f16_multi (blocks of keys and values converted once for several queries) gives
/// each query the bits of ck_attention_f16 alone, on every ISA: random shapes, head sizes with and
/// without leftovers, counts as in a causal tile (consecutive positions) and as the query heads of
/// one KV head (equal counts), counts longer than one converted block.
final class MultiQueryAttentionTests: XCTestCase {
    struct Case {
        let hd: Int, heads: Int, counts: [Int]
    }

    func randomCases(_ rng: inout TestRNG) -> [Case] {
        var cases: [Case] = [
            Case(hd: 64, heads: 3, counts: [1]),
            Case(hd: 64, heads: 3, counts: [5, 5, 5]),                 // a GQA group, one position
            Case(hd: 64, heads: 1, counts: Array(1...9)),              // causal tile from position 0
            Case(hd: 64, heads: 2, counts: [70, 71, 72, 73, 70, 71]),  // over one block of 64 keys
            Case(hd: 128, heads: 2, counts: [33, 34, 35]),             // blocks of 32 keys
            Case(hd: 256, heads: 1, counts: [17, 40]),
            Case(hd: 48, heads: 2, counts: [3, 4, 9]),                 // leftovers: per-query path
            Case(hd: 32, heads: 4, counts: [130, 1, 129]),
        ]
        for _ in 0..<6 {
            let hd = [32, 64, 96, 128, 80][Int(rng.next() % 5)]
            let first = 1 + Int(rng.next() % 150)
            let nq = 1 + Int(rng.next() % 7)
            let causal = rng.next() % 2 == 0
            cases.append(Case(hd: hd, heads: 1 + Int(rng.next() % 3),
                              counts: (0..<nq).map { causal ? first + $0 : first }))
        }
        return cases
    }

    /// Random half keys and values for the case's longest count (rows of `heads` heads), and one
    /// query per count, rounded to half as the engine passes them.
    func randomInputs(_ c: Case, _ rng: inout TestRNG) -> (keys: [UInt16], values: [UInt16], queries: [[Float]]) {
        let rows = c.counts.max()! * c.hd * c.heads
        let keys = (0..<rows).map { _ in ck_f32_to_f16_1(rng.normal(1)) }
        let values = (0..<rows).map { _ in ck_f32_to_f16_1(rng.normal(1)) }
        let queries: [[Float]] = c.counts.map { _ in
            (0..<c.hd).map { _ in ck_f16_to_f32_1(ck_f32_to_f16_1(rng.normal(2))) }
        }
        return (keys, values, queries)
    }

    func testMultiEqualsSingleQuery() {
        var rng = TestRNG(seed: 2024)
        for c in randomCases(&rng) {
            let (keys, values, queries) = randomInputs(c, &rng)
            let stride = c.hd * c.heads, scale = 1 / Float(c.hd).squareRoot()
            let head = Int(rng.next() % UInt64(c.heads)), off = head * c.hd
            for isa in testedISAs() {
                withISA(isa) {
                    let want: [[Float]] = queries.indices.map { t in
                        var out = [Float](repeating: .nan, count: c.hd)
                        var sc = [Float](repeating: .nan, count: c.counts[t])
                        keys.withUnsafeBufferPointer { k in
                            values.withUnsafeBufferPointer { v in
                                ck_attention_f16(queries[t], k.baseAddress! + off, v.baseAddress! + off, Int64(stride),
                                                 Int64(c.counts[t]), Int64(c.hd), scale, &sc, &out)
                            }
                        }
                        return out
                    }
                    let got = multi(queries: queries, counts: c.counts, keys: keys, values: values, offset: off,
                                    stride: stride, hd: c.hd, scale: scale)
                    for t in queries.indices {
                        XCTAssertEqual(got[t].map(\.bitPattern), want[t].map(\.bitPattern),
                                       "hd \(c.hd) counts \(c.counts) query \(t) [\(isaName(isa))]")
                    }
                }
            }
        }
    }

    /// Against a double-precision reference (exact products of halves, softmax in double): every
    /// ISA's result is within float rounding of the true attention.
    func testMultiNearDoubleReference() {
        var rng = TestRNG(seed: 99)
        for c in randomCases(&rng) {
            let (keys, values, queries) = randomInputs(c, &rng)
            let stride = c.hd * c.heads, scale = 1 / Float(c.hd).squareRoot()
            for isa in testedISAs() {
                withISA(isa) {
                    let got = multi(queries: queries, counts: c.counts, keys: keys, values: values, offset: 0,
                                    stride: stride, hd: c.hd, scale: scale)
                    for t in queries.indices {
                        let count = c.counts[t]
                        var s = (0..<count).map { j in
                            (0..<c.hd).reduce(0.0) { $0 + Double(ck_f16_to_f32_1(keys[j * stride + $1])) * Double(queries[t][$1]) }
                                * Double(scale)
                        }
                        let m = s.max()!
                        s = s.map { Foundation.exp($0 - m) }
                        let total = s.reduce(0, +)
                        for i in 0..<c.hd {
                            let ref = (0..<count).reduce(0.0) {
                                $0 + s[$1] / total * Double(ck_f16_to_f32_1(values[$1 * stride + i]))
                            }
                            // Probabilities are rounded to half (relative 2^-11) as llama.cpp does.
                            XCTAssertEqual(Double(got[t][i]), ref, accuracy: 2e-3 * max(1, abs(ref)),
                                           "hd \(c.hd) counts \(c.counts) query \(t) element \(i) [\(isaName(isa))]")
                        }
                    }
                }
            }
        }
    }

    func multi(queries: [[Float]], counts: [Int], keys: [UInt16], values: [UInt16], offset: Int, stride: Int,
               hd: Int, scale: Float) -> [[Float]] {
        let nq = queries.count, scoreStride = counts.max()! + 3
        let flatQ = queries.flatMap { $0 }
        var out = [Float](repeating: .nan, count: nq * hd)
        var scores = [Float](repeating: .nan, count: nq * scoreStride)
        flatQ.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                let qs = (0..<nq).map {
                    ck_attention_query(q: q.baseAddress! + $0 * hd, out: o.baseAddress! + $0 * hd, count: Int64(counts[$0]))
                }
                keys.withUnsafeBufferPointer { k in
                    values.withUnsafeBufferPointer { v in
                        ck_attention_f16_multi(qs, Int64(nq), k.baseAddress! + offset, v.baseAddress! + offset,
                                               Int64(stride), Int64(hd), scale, &scores, Int64(scoreStride))
                    }
                }
            }
        }
        return (0..<nq).map { Array(out[($0 * hd)..<(($0 + 1) * hd)]) }
    }
}
