import CKernels
import XCTest

/// The row-interleaved (repacked) layouts: the repack keeps every value (dequantization is
/// bit-identical with the file's rows), products agree with the ggml-exact ck_matmul within a
/// float-reordering bound, and they are bit-identical across ISAs and however they are split.
final class RepackTests: XCTestCase {
    static let types: [QType] = [.q4_0, .q4_1, .q5_0, .q8_0, .q4_K, .q5_K, .q6_K]

    struct Case {
        let wt: QType
        let rows: Int, k: Int, nb: Int
        let w: [UInt8]
        let packed: [UInt8]
        let x: [UInt8]
        let xrow: Int
        let xf: [Float]
    }

    func makeCase(_ wt: QType, rows: Int = 21, k: Int? = nil, nb: Int = 11, seed: UInt64) -> Case {
        // K-quants: rows of whole 256-quant super-blocks
        let k = k ?? (wt.blockElements == 256 ? 768 : 544)
        var rng = TestRNG(seed: seed)
        let w = MatmulTests.randomWeights(wt, rows: rows, k: k, rng: &rng)
        let bytes = Int(ck_repack_bytes(wt.id, Int64(rows), Int64(k)))
        XCTAssertEqual(bytes, (rows + 7) / 8 * 8 * wt.rowBytes(k), "\(wt): repacked size = padded rows")
        var packed = [UInt8](repeating: 0xAA, count: bytes)
        XCTAssertEqual(ck_repack(wt.id, w, &packed, Int64(rows), Int64(k)), 0)
        let xt = QType(id: ck_vec_dot_type(wt.id), name: "act")
        let xf = (0..<(nb * k)).map { i in rng.normal(1 + Float((i / 32) % 5)) }
        let xrow = xt.rowBytes(k)
        var x = [UInt8](repeating: 0, count: nb * xrow)
        XCTAssertEqual(ck_quantize_row(xt.id, xf, &x, Int64(nb * k)), 0)
        return Case(wt: wt, rows: rows, k: k, nb: nb, w: w, packed: packed, x: x, xrow: xrow, xf: xf)
    }

    func repacked(_ c: Case, r0: Int, r1: Int, b0: Int, count: Int, into out: inout [Float]) {
        let xs = Array(c.x[(b0 * c.xrow)..<((b0 + count) * c.xrow)])
        var part = [Float](repeating: .nan, count: count * c.rows)
        XCTAssertEqual(ck_matmul_repacked(c.wt.id, c.packed, xs, Int64(c.k), Int64(r0), Int64(r1), Int64(count),
                                          &part, Int64(c.rows)), 0)
        for b in 0..<count {
            for r in r0..<r1 { out[(b0 + b) * c.rows + r] = part[b * c.rows + r] }
        }
    }

    func testDequantizedRowsAreTheFileRows() {
        for (n, wt) in Self.types.enumerated() {
            let c = makeCase(wt, seed: 40 + UInt64(n))
            let rb = wt.rowBytes(c.k)
            for r in 0..<c.rows {
                var want = [Float](repeating: 0, count: c.k), got = [Float](repeating: 1, count: c.k)
                XCTAssertEqual(ck_dequantize_row(wt.id, Array(c.w[(r * rb)..<((r + 1) * rb)]), &want, Int64(c.k)), 0)
                XCTAssertEqual(ck_dequantize_repacked_row(wt.id, c.packed, Int64(c.k), Int64(r), &got), 0)
                XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(wt) row \(r)")
            }
        }
    }

    func testCloseToExactKernelAndIdenticalAcrossISAs() {
        for (n, wt) in Self.types.enumerated() {
            let c = makeCase(wt, seed: 50 + UInt64(n))
            var exact = [Float](repeating: .nan, count: c.nb * c.rows)
            XCTAssertEqual(ck_matmul(wt.id, c.w, c.x, Int64(c.k), 0, Int64(c.rows), Int64(c.nb), &exact, Int64(c.rows)), 0)
            // magnitude of each dot product: sum |w_i * x_i| over dequantized values
            let rb = wt.rowBytes(c.k)
            var wf = [Float](repeating: 0, count: c.rows * c.k)
            for r in 0..<c.rows {
                wf.withUnsafeMutableBufferPointer { p in
                    _ = ck_dequantize_row(wt.id, Array(c.w[(r * rb)..<((r + 1) * rb)]), p.baseAddress! + r * c.k, Int64(c.k))
                }
            }
            var results: [[Float]] = []
            for isa in testedISAs() {
                withISA(isa) {
                    var got = [Float](repeating: .nan, count: c.nb * c.rows)
                    repacked(c, r0: 0, r1: c.rows, b0: 0, count: c.nb, into: &got)
                    for b in 0..<c.nb {
                        for r in 0..<c.rows {
                            var mag: Double = 0
                            for i in 0..<c.k { mag += abs(Double(wf[r * c.k + i]) * Double(c.xf[b * c.k + i])) }
                            let e = Double(exact[b * c.rows + r]), g = Double(got[b * c.rows + r])
                            XCTAssertLessThanOrEqual(abs(e - g), 2e-6 * mag + 1e-30,
                                                     "\(wt) [\(isaName(isa))] row \(r) act \(b): \(g) vs exact \(e)")
                        }
                    }
                    results.append(got)
                }
            }
            for other in results.dropFirst() {
                XCTAssertEqual(other.map(\.bitPattern), results[0].map(\.bitPattern), "\(wt): scalar and SIMD bits")
            }
            // Q4_1 keeps ggml's order (the golden tests compare greedy tokens with llama.cpp):
            // bit-identical with the exact AVX2 kernel.
            if wt.id == QType.q4_1.id && isX86SIMD(ck_isa_best()) {
                XCTAssertEqual(results[0].map(\.bitPattern), exact.map(\.bitPattern), "q4_1 repacked == ck_matmul bits")
            }
        }
    }

    func testEverySplitGivesIdenticalBits() {
        for (n, wt) in Self.types.enumerated() {
            let c = makeCase(wt, seed: 60 + UInt64(n))
            for isa in testedISAs() {
                withISA(isa) {
                    let tag = "\(wt) [\(isaName(isa))]"
                    var all = [Float](repeating: .nan, count: c.nb * c.rows)
                    repacked(c, r0: 0, r1: c.rows, b0: 0, count: c.nb, into: &all)
                    XCTAssertFalse(all.contains { !$0.isFinite }, "\(tag): every output written")
                    var single = [Float](repeating: .nan, count: c.nb * c.rows)
                    for b in 0..<c.nb {
                        for r in 0..<c.rows { repacked(c, r0: r, r1: r + 1, b0: b, count: 1, into: &single) }
                    }
                    XCTAssertEqual(single.map(\.bitPattern), all.map(\.bitPattern), "\(tag): one row, one activation")
                    let cuts = [0, 1, 4, 5, 16, 17, c.rows]
                    for g in [2, 3, 5, 7] {
                        var grouped = [Float](repeating: .nan, count: c.nb * c.rows)
                        var b0 = 0
                        while b0 < c.nb {
                            let count = min(g, c.nb - b0)
                            for i in 0..<(cuts.count - 1) {
                                repacked(c, r0: cuts[i], r1: cuts[i + 1], b0: b0, count: count, into: &grouped)
                            }
                            b0 += count
                        }
                        XCTAssertEqual(grouped.map(\.bitPattern), all.map(\.bitPattern), "\(tag): groups of \(g)")
                    }
                }
            }
        }
    }

    /// Large batches of the K-quants take other paths than `nb: 11` (the AVX-512 kernels unpack a
    /// row block once for many activations, in k-chunks of 16 super-blocks and passes of 128
    /// activations): the same bits as the scalar kernel and as one activation at a time, with
    /// a chunk remainder (19 super-blocks), an odd group and a partial group (77 rows), a pass
    /// remainder (150 activations) and row ranges that cut groups.
    func testLargeBatchesOfKQuantsGiveTheScalarBits() {
        for (n, wt) in [QType.q4_K, .q5_K, .q6_K].enumerated() {
            let c = makeCase(wt, rows: 77, k: 19 * 256, nb: 150, seed: 80 + UInt64(n))
            var results: [[Float]] = []
            for isa in testedISAs() {
                withISA(isa) {
                    var all = [Float](repeating: .nan, count: c.nb * c.rows)
                    repacked(c, r0: 0, r1: c.rows, b0: 0, count: c.nb, into: &all)
                    XCTAssertFalse(all.contains { !$0.isFinite }, "\(wt) [\(isaName(isa))]: every output written")
                    var split = [Float](repeating: .nan, count: c.nb * c.rows)
                    for (r0, r1) in [(0, 16), (16, 43), (43, 77)] {
                        for (b0, count) in [(0, 1), (1, 30), (31, 119)] {
                            repacked(c, r0: r0, r1: r1, b0: b0, count: count, into: &split)
                        }
                    }
                    XCTAssertEqual(split.map(\.bitPattern), all.map(\.bitPattern), "\(wt) [\(isaName(isa))]: split rows and batches")
                    results.append(all)
                }
            }
            for other in results.dropFirst() {
                XCTAssertEqual(other.map(\.bitPattern), results[0].map(\.bitPattern), "\(wt): scalar and SIMD bits")
            }
        }
    }

    func testOnlyWritesItsRowsAndRejectsBadInput() {
        let c = makeCase(.q4_0, seed: 70)
        var out = [Float](repeating: -7, count: c.rows)
        XCTAssertEqual(ck_matmul_repacked(c.wt.id, c.packed, c.x, Int64(c.k), 3, 11, 1, &out, Int64(c.rows)), 0)
        XCTAssertTrue(out[0..<3].allSatisfy { $0 == -7 } && out[11...].allSatisfy { $0 == -7 }, "rows outside untouched")
        XCTAssertTrue(out[3..<11].allSatisfy { $0 != -7 })
        XCTAssertEqual(ck_repack_bytes(QType.f16.id, 8, 64), 0)
        XCTAssertEqual(ck_repack_bytes(QType.q3_K.id, 8, 256), 0)
        XCTAssertEqual(ck_repack_bytes(QType.q4_K.id, 8, 288), 0, "Q4_K: k not a multiple of 256")
        XCTAssertEqual(ck_repack_bytes(QType.q4_0.id, 8, 48), 0, "k not a multiple of 32")
        XCTAssertEqual(ck_repack_preferred(QType.f16.id), 0)
        XCTAssertEqual(ck_matmul_repacked(QType.f16.id, c.packed, c.x, Int64(c.k), 0, 1, 1, &out, Int64(c.rows)), -1)
        XCTAssertEqual(ck_matmul_repacked(c.wt.id, c.packed, c.x, 48, 0, 1, 1, &out, Int64(c.rows)), -1)
        XCTAssertEqual(ck_matmul_repacked(c.wt.id, c.packed, c.x, Int64(c.k), 5, 4, 1, &out, Int64(c.rows)), -1)
        withISA(Int32(CK_ISA_SCALAR)) {
            XCTAssertEqual(ck_repack_preferred(QType.q4_0.id), 0, "the scalar path keeps the file layout")
        }
        if isX86SIMD(ck_isa_best()) {
            XCTAssertEqual(ck_repack_preferred(QType.q4_0.id), 1)
        }
    }
}
