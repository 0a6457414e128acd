import CKernels
import XCTest

/// ck_matmul's result for (weight row r, activation b) is bit-identical however it is computed:
/// alone or in a batch, at any position inside an activation group, in any row range and split.
/// The inference engine relies on this (a sequence decoded alone gives the same logits as when
/// batched with others).
final class BatchInvarianceTests: XCTestCase {
    /// Calls ck_matmul for rows [r0, r1) and activations [b0, b0 + count) of `x` (quantized rows of
    /// `xrow` bytes), writing into `out` laid out [b][r] with stride `rows`.
    func matmul(_ wt: QType, _ w: [UInt8], _ x: [UInt8], xrow: Int, k: Int, rows: Int,
                r0: Int, r1: Int, b0: Int, count: Int, into out: inout [Float]) {
        let xs = Array(x[(b0 * xrow)..<((b0 + count) * xrow)])
        var part = [Float](repeating: .nan, count: count * rows)
        XCTAssertEqual(ck_matmul(wt.id, w, xs, Int64(k), Int64(r0), Int64(r1), Int64(count), &part, Int64(rows)), 0)
        for b in 0..<count {
            for r in r0..<r1 { out[(b0 + b) * rows + r] = part[b * rows + r] }
        }
    }

    func assertBitEqual(_ got: [Float], _ want: [Float], _ what: String) {
        let diffs = zip(got, want).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
        if let first = diffs.first {
            XCTFail("\(what): \(diffs.count) outputs differ, first at \(first.offset): \(first.element.0) vs \(first.element.1)")
        }
    }

    func testEveryWayOfSplittingGivesIdenticalBits() {
        let rows = 23, nb = 11
        var seed: UInt64 = 900
        for wt in QType.weightTypes {
            let k = wt.isKQuant ? 512 : wt.blockElements == 32 ? 544 : 203  // float types: a tail too
            seed += 1
            var rng = TestRNG(seed: seed)
            let w = MatmulTests.randomWeights(wt, rows: rows, k: k, rng: &rng)
            let xt = QType(id: ck_vec_dot_type(wt.id), name: "act")
            let xf = (0..<(nb * k)).map { i in rng.normal(1 + Float((i / 32) % 5)) }
            let xrow = xt.rowBytes(k)
            for isa in testedISAs() {
                withISA(isa) {
                    let tag = "\(wt) [\(isaName(isa))]"
                    var x = [UInt8](repeating: 0, count: nb * xrow)
                    XCTAssertEqual(ck_quantize_row(xt.id, xf, &x, Int64(nb * k)), 0)
                    var all = [Float](repeating: .nan, count: nb * rows)
                    matmul(wt, w, x, xrow: xrow, k: k, rows: rows, r0: 0, r1: rows, b0: 0, count: nb, into: &all)
                    XCTAssertFalse(all.contains { !$0.isFinite }, "\(tag): every output written")

                    // one activation at a time (the decode kernels), all rows / single rows / odd ranges
                    var single = [Float](repeating: .nan, count: nb * rows)
                    for b in 0..<nb {
                        matmul(wt, w, x, xrow: xrow, k: k, rows: rows, r0: 0, r1: rows, b0: b, count: 1, into: &single)
                    }
                    assertBitEqual(single, all, "\(tag): nb=1 vs nb=\(nb)")
                    var oneRow = [Float](repeating: .nan, count: nb * rows)
                    for b in 0..<nb {
                        for r in 0..<rows {
                            matmul(wt, w, x, xrow: xrow, k: k, rows: rows, r0: r, r1: r + 1, b0: b, count: 1, into: &oneRow)
                        }
                    }
                    assertBitEqual(oneRow, all, "\(tag): one row and one activation per call")

                    // activation groups of odd sizes, starting at varying offsets, rows split at odd points
                    let cuts = [0, 1, 4, 5, 16, 17, rows]
                    for g in [2, 3, 5, 7, 9] {
                        var grouped = [Float](repeating: .nan, count: nb * rows)
                        var b0 = 0
                        while b0 < nb {
                            let count = min(g, nb - b0)
                            for c in 0..<(cuts.count - 1) {
                                matmul(wt, w, x, xrow: xrow, k: k, rows: rows, r0: cuts[c], r1: cuts[c + 1], b0: b0,
                                       count: count, into: &grouped)
                            }
                            b0 += count
                        }
                        assertBitEqual(grouped, all, "\(tag): groups of \(g), rows split at \(cuts)")
                    }
                    // the same activation at every position of a batch of identical activations
                    let b = 3
                    let rep = (0..<nb).flatMap { _ in x[(b * xrow)..<((b + 1) * xrow)] }
                    var repeated = [Float](repeating: .nan, count: nb * rows)
                    matmul(wt, w, rep, xrow: xrow, k: k, rows: rows, r0: 2, r1: rows, b0: 0, count: nb, into: &repeated)
                    for p in 0..<nb {
                        assertBitEqual(Array(repeated[(p * rows + 2)..<((p + 1) * rows)]), Array(all[(b * rows + 2)..<((b + 1) * rows)]),
                                       "\(tag): activation \(b) at batch position \(p)")
                    }
                }
            }
        }
    }
}
