import Foundation

/// Rotary position embedding in llama.cpp's "normal" mode (adjacent pairs rotated), with the
/// file's base, rotated dimension count, linear scaling and optional per-frequency factors.
struct RotaryEmbedding: Sendable {
    let headDimension: Int
    let dimensions: Int
    let base: Float
    let linearScale: Float
    let frequencyFactors: [Float]?

    /// Rotates `heads` consecutive heads of `x` by a table of ``table(position:cos:sin:)``.
    func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        for h in 0..<heads {
            let v = x + h * headDimension
            for i in 0..<(dimensions / 2) {
                let x0 = v[2 * i], x1 = v[2 * i + 1]
                v[2 * i] = x0 * cos[i] - x1 * sin[i]
                v[2 * i + 1] = x0 * sin[i] + x1 * cos[i]
            }
        }
    }

    /// cos/sin of every rotated pair at `position` (`dimensions / 2` each).
    func table(position: Int, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        let thetaScale = powf(base, -2 / Float(dimensions))
        let freqScale = 1 / linearScale
        var thetaExtrap = Float(position)
        for i in 0..<(dimensions / 2) {
            let factor = frequencyFactors?[i] ?? 1
            let theta = freqScale * thetaExtrap / factor
            c[i] = cosf(theta)
            s[i] = sinf(theta)
            thetaExtrap *= thetaScale
        }
    }
}
