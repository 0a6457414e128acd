import CaravanCore
import Foundation
import GGUF
import TestSupport
import XCTest
@testable import Llama

/// Tiny random LLaMA-architecture files (F32 weights) run by the stage and by a naive float
/// reference written here from the math: checks GQA, RoPE options and untied output.
final class SyntheticModelTests: XCTestCase {
    struct Config {
        var d = 64, heads = 4, kvHeads = 2, ffn = 96, layers = 2, vocab = 50
        var ropeBase: Float = 10_000, linearScale: Float? = nil, freqFactors: [Float]? = nil
        var tiedOutput = false
        var headDim: Int { d / heads }
    }

    struct Weights {
        var emb: [Float], out: [Float], outNorm: [Float]
        var attnNorm: [[Float]], wq: [[Float]], wk: [[Float]], wv: [[Float]], wo: [[Float]]
        var ffnNorm: [[Float]], gate: [[Float]], up: [[Float]], down: [[Float]]
    }

    func random(_ n: Int, _ rng: inout some RandomNumberGenerator, scale: Float = 0.3) -> [Float] {
        (0..<n).map { _ in Float.random(in: -scale...scale, using: &rng) }
    }

    func make(_ c: Config, seed: UInt64) throws -> (String, Weights) {
        var rng = SplitMix(seed: seed)
        let kvd = c.kvHeads * c.headDim
        let norm = { (n: Int, rng: inout SplitMix) in (0..<n).map { _ in Float.random(in: 0.8...1.2, using: &rng) } }
        var w = Weights(emb: random(c.vocab * c.d, &rng, scale: 1), out: random(c.vocab * c.d, &rng), outNorm: norm(c.d, &rng),
                        attnNorm: [], wq: [], wk: [], wv: [], wo: [], ffnNorm: [], gate: [], up: [], down: [])
        if c.tiedOutput { w.out = w.emb }
        var b = GGUFBuilder()
        b.set("general.architecture", .string("llama"))
        b.set("llama.block_count", .u32(UInt32(c.layers)))
        b.set("llama.context_length", .u32(128))
        b.set("llama.embedding_length", .u32(UInt32(c.d)))
        b.set("llama.feed_forward_length", .u32(UInt32(c.ffn)))
        b.set("llama.attention.head_count", .u32(UInt32(c.heads)))
        b.set("llama.attention.head_count_kv", .u32(UInt32(c.kvHeads)))
        b.set("llama.attention.layer_norm_rms_epsilon", .f32(1e-5))
        b.set("llama.rope.freq_base", .f32(c.ropeBase))
        if let s = c.linearScale {
            b.set("llama.rope.scaling.type", .string("linear"))
            b.set("llama.rope.scaling.factor", .f32(s))
        }
        b.addF32("token_embd.weight", dims: [c.d, c.vocab], values: w.emb)
        b.addF32("output_norm.weight", dims: [c.d], values: w.outNorm)
        if !c.tiedOutput { b.addF32("output.weight", dims: [c.d, c.vocab], values: w.out) }
        if let f = c.freqFactors { b.addF32("rope_freqs.weight", dims: [f.count], values: f) }
        for l in 0..<c.layers {
            w.attnNorm.append(norm(c.d, &rng)); w.ffnNorm.append(norm(c.d, &rng))
            w.wq.append(random(c.d * c.d, &rng)); w.wk.append(random(kvd * c.d, &rng)); w.wv.append(random(kvd * c.d, &rng))
            w.wo.append(random(c.d * c.d, &rng)); w.gate.append(random(c.ffn * c.d, &rng)); w.up.append(random(c.ffn * c.d, &rng))
            w.down.append(random(c.d * c.ffn, &rng))
            let p = "blk.\(l)."
            b.addF32(p + "attn_norm.weight", dims: [c.d], values: w.attnNorm[l])
            b.addF32(p + "attn_q.weight", dims: [c.d, c.d], values: w.wq[l])
            b.addF32(p + "attn_k.weight", dims: [c.d, kvd], values: w.wk[l])
            b.addF32(p + "attn_v.weight", dims: [c.d, kvd], values: w.wv[l])
            b.addF32(p + "attn_output.weight", dims: [c.d, c.d], values: w.wo[l])
            b.addF32(p + "ffn_norm.weight", dims: [c.d], values: w.ffnNorm[l])
            b.addF32(p + "ffn_gate.weight", dims: [c.d, c.ffn], values: w.gate[l])
            b.addF32(p + "ffn_up.weight", dims: [c.d, c.ffn], values: w.up[l])
            b.addF32(p + "ffn_down.weight", dims: [c.ffn, c.d], values: w.down[l])
        }
        return (try b.write(name: "synthetic"), w)
    }

    // MARK: Reference, written from the math

    func matvec(_ w: [Float], _ x: [Float], rows: Int) -> [Float] {
        let cols = x.count
        return (0..<rows).map { r in (0..<cols).reduce(Float(0)) { $0 + w[r * cols + $1] * x[$1] } }
    }

    func rmsNorm(_ x: [Float], _ g: [Float]) -> [Float] {
        let ms = x.reduce(Float(0)) { $0 + $1 * $1 } / Float(x.count)
        return zip(x, g).map { $0 / (ms + 1e-5).squareRoot() * $1 }
    }

    func rope(_ v: inout [Float], heads: Int, pos: Int, _ c: Config) {
        let hd = c.headDim
        for h in 0..<heads {
            for i in 0..<(hd / 2) {
                var theta = Float(pos) / (c.linearScale ?? 1) * powf(c.ropeBase, -Float(2 * i) / Float(hd))
                if let f = c.freqFactors { theta /= f[i] }
                let a = v[h * hd + 2 * i], b = v[h * hd + 2 * i + 1]
                v[h * hd + 2 * i] = a * cosf(theta) - b * sinf(theta)
                v[h * hd + 2 * i + 1] = a * sinf(theta) + b * cosf(theta)
            }
        }
    }

    func reference(_ c: Config, _ w: Weights, tokens: [Int]) -> [Float] {
        let hd = c.headDim, kvd = c.kvHeads * hd
        var keys = [[[Float]]](repeating: [], count: c.layers), values = keys
        var logits: [Float] = []
        for (pos, t) in tokens.enumerated() {
            var x = Array(w.emb[(t * c.d)..<((t + 1) * c.d)])
            for l in 0..<c.layers {
                let xn = rmsNorm(x, w.attnNorm[l])
                var q = matvec(w.wq[l], xn, rows: c.d), k = matvec(w.wk[l], xn, rows: kvd)
                let v = matvec(w.wv[l], xn, rows: kvd)
                rope(&q, heads: c.heads, pos: pos, c); rope(&k, heads: c.kvHeads, pos: pos, c)
                keys[l].append(k); values[l].append(v)
                var att = [Float](repeating: 0, count: c.d)
                for h in 0..<c.heads {
                    let g = h / (c.heads / c.kvHeads)
                    var s = (0...pos).map { j in (0..<hd).reduce(Float(0)) { $0 + q[h * hd + $1] * keys[l][j][g * hd + $1] } / Float(hd).squareRoot() }
                    let m = s.max()!
                    s = s.map { expf($0 - m) }
                    let sum = s.reduce(0, +)
                    for j in 0...pos { for e in 0..<hd { att[h * hd + e] += s[j] / sum * values[l][j][g * hd + e] } }
                }
                x = zip(x, matvec(w.wo[l], att, rows: c.d)).map(+)
                let xf = rmsNorm(x, w.ffnNorm[l])
                let gt = matvec(w.gate[l], xf, rows: c.ffn), u = matvec(w.up[l], xf, rows: c.ffn)
                let hdn = zip(gt, u).map { $0 / (1 + expf(-$0)) * $1 }
                x = zip(x, matvec(w.down[l], hdn, rows: c.d)).map(+)
            }
            logits = matvec(w.out, rmsNorm(x, w.outNorm), rows: c.vocab)
        }
        return logits
    }

    func check(_ c: Config, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) throws {
        let (path, w) = try make(c, seed: seed)
        let gguf = try GGUFFile(path: path)
        let stage = try LlamaStage(file: gguf, contextLimit: 32, runner: ComputeThreadPool(threads: 2))
        let tokens = [3, 17, 42, 8, 0, 49, 21, 5, 5, 11]
        let entries = tokens.enumerated().map { StageEntry(sequence: SequenceID(1), position: $0.offset, token: Int32($0.element), wantsLogits: $0.offset == tokens.count - 1) }
        guard case let .logits(got, _, vocab) = try stage.forward(StageBatch(entries: entries)) else { return XCTFail() }
        XCTAssertEqual(vocab, c.vocab)
        let expected = reference(c, w, tokens: tokens)
        let scale = expected.map(abs).max()!
        for i in 0..<c.vocab {
            // F16 keys/values/probabilities in the engine vs all-F32 reference.
            XCTAssertEqual(got[i], expected[i], accuracy: 5e-3 * scale, "logit \(i)", file: file, line: line)
        }
    }

    func testLlama2StyleMultiHeadTiedOutput() throws {
        try check(Config(heads: 4, kvHeads: 4, tiedOutput: true), seed: 1)
    }

    func testGroupedQueryAttentionUntiedOutput() throws {
        try check(Config(heads: 4, kvHeads: 2, ropeBase: 500_000), seed: 2)
    }

    func testLlama3RopeFrequencyFactorsAndLinearScaling() throws {
        try check(Config(heads: 4, kvHeads: 2, freqFactors: [1, 1, 1.5, 2, 4, 8, 8, 8]), seed: 3)
        try check(Config(heads: 4, kvHeads: 1, linearScale: 4), seed: 4)
    }

    func testMissingTensorAndUnsupportedArchitectureAreClearErrors() throws {
        var b = GGUFBuilder()
        b.set("general.architecture", .string("mamba"))
        let gguf = try GGUFFile(path: b.write())
        XCTAssertThrowsError(try LlamaStage(file: gguf)) { XCTAssertTrue("\($0)".contains("unsupported model architecture 'mamba'"), "\($0)") }
        let (path, _) = try make(Config(), seed: 5)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // Rename blk.1.ffn_up.weight in the index so it is missing.
        let needle = Array("blk.1.ffn_up.weight".utf8)
        if let at = (0..<(bytes.count - needle.count)).first(where: { Array(bytes[$0..<($0 + needle.count)]) == needle }) {
            bytes[at + 6] = UInt8(ascii: "X")
        }
        let broken = try GGUFFile(path: TempFiles.write(bytes, name: "missing.gguf"))
        XCTAssertThrowsError(try LlamaStage(file: broken)) { XCTAssertTrue("\($0)".contains("'blk.1.ffn_up.weight' is missing"), "\($0)") }
        // Layers beyond the file's count are refused.
        XCTAssertThrowsError(try LlamaStage(file: try GGUFFile(path: path), layers: LayerRange(1, 3)))
    }
}
