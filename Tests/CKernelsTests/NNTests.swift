import CKernels
import Foundation
import XCTest

/// RMS norm, SiLU-gated product and softmax against Double references, on every tested ISA.
final class NNTests: XCTestCase {
    func testRMSNorm() {
        var rng = TestRNG(seed: 21)
        for n in [1, 7, 8, 576, 1001] {
            let x = (0..<n).map { _ in rng.normal(3) }, w = (0..<n).map { _ in rng.normal() }
            let ms = x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(n)
            let scale = 1 / (ms + 1e-5).squareRoot()
            for isa in testedISAs() {
                withISA(isa) {
                    var y = [Float](repeating: 0, count: n)
                    ck_rmsnorm_f32(x, w, &y, Int64(n), 1e-5)
                    var yn = x
                    yn.withUnsafeMutableBufferPointer { p in ck_rmsnorm_f32(p.baseAddress, nil, p.baseAddress, Int64(n), 1e-5) }
                    for i in 0..<n {
                        let want = Double(x[i]) * scale
                        XCTAssertEqual(Double(yn[i]), want, accuracy: 2e-6 * abs(want) + 1e-30, "n=\(n) [\(isaName(isa))]")
                        XCTAssertEqual(Double(y[i]), want * Double(w[i]), accuracy: 3e-6 * abs(want * Double(w[i])) + 1e-30)
                    }
                }
            }
        }
    }

    func testSiLUMul() {
        var rng = TestRNG(seed: 22)
        var g = (0..<1000).map { _ in rng.normal(4) }
        g += [0, -0.0, 1e-20, -1e-20, 20, -20, 87, -87, 88.5, -88.5, 100, -100, 1e30, -1e30]
        let u = g.map { _ in rng.normal() }
        for isa in testedISAs() {
            withISA(isa) {
                var y = [Float](repeating: 0, count: g.count)
                ck_silu_mul_f32(g, u, &y, Int64(g.count))
                for i in 0..<g.count {
                    let gd = Double(g[i])
                    let want = gd / (1 + Foundation.exp(-gd)) * Double(u[i])
                    XCTAssertEqual(Double(y[i]), want, accuracy: 4e-6 * abs(want) + 1e-35, "g=\(g[i]) [\(isaName(isa))]")
                }
            }
        }
    }

    func testSoftmax() {
        var rng = TestRNG(seed: 23)
        for n in [1, 5, 8, 33, 1000] {
            var x = (0..<n).map { _ in rng.normal(10) }
            if n > 4 { x[1] = -.infinity; x[3] = x[0] - 200 }
            let mx = Double(x.max() ?? 0)
            let e = x.map { Foundation.exp(Double($0) - mx) }
            let sum = e.reduce(0, +)
            for isa in testedISAs() {
                withISA(isa) {
                    var y = x
                    ck_softmax_f32(&y, Int64(n))
                    for i in 0..<n {
                        XCTAssertEqual(Double(y[i]), e[i] / sum, accuracy: 3e-6 * (e[i] / sum) + 1e-37, "n=\(n) i=\(i) [\(isaName(isa))]")
                    }
                    XCTAssertEqual(y.reduce(0, +), 1, accuracy: 1e-5)
                    if n > 4 { XCTAssertEqual(y[1], 0); XCTAssertEqual(y[3], 0) }
                }
            }
        }
        var masked = [Float](repeating: -.infinity, count: 12)
        ck_softmax_f32(&masked, 12)
        XCTAssertEqual(masked, [Float](repeating: 0, count: 12), "all masked gives zeros, not NaN")
    }
}
