import CKernels
import CaravanCore
import Foundation
import GGUF
import TestSupport
import XCTest
@testable import Llama

/// A tiny model with Q4_0 / Q5_0 / Q8_0 matrices runs on the layouts repacked at load time (where
/// the ISA prefers them): a prompt gives the same logits in one batch as token by token, and the
/// logits stay close to those of the file layout (ggml's order, CK_NO_REPACK=1).
final class RepackedModelTests: XCTestCase {
    let d = 64, heads = 4, kvHeads = 2, ffn = 96, layers = 2, vocab = 50  // 50 rows: a padded group

    /// Reference quantizers of the weight types (round to nearest, ggml's scale choice).
    func quantize(_ type: Int32, _ x: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        for b in stride(from: 0, to: x.count, by: 32) {
            let v = Array(x[b..<(b + 32)])
            let amax = v.max { abs($0) < abs($1) }!
            func half(_ f: Float) -> [UInt8] { let h = ck_f32_to_f16_1(f); return [UInt8(h & 0xFF), UInt8(h >> 8)] }
            switch type {
            case Int32(CK_TYPE_Q8_0):
                let dd = abs(amax) / 127
                out += half(dd)
                out += v.map { UInt8(bitPattern: Int8(dd == 0 ? 0 : ($0 / dd).rounded())) }
            case Int32(CK_TYPE_Q4_0), Int32(CK_TYPE_Q5_0):
                let five = type == Int32(CK_TYPE_Q5_0)
                let dd = amax / (five ? -16 : -8)
                let q = v.map { min(five ? 31 : 15, max(0, Int(dd == 0 ? 0 : ($0 / dd + (five ? 16.5 : 8.5)).rounded(.down)))) }
                out += half(dd)
                if five {
                    var qh: UInt32 = 0
                    for (i, e) in q.enumerated() where e & 16 != 0 { qh |= 1 << UInt32(i) }
                    out += [0, 8, 16, 24].map { UInt8((qh >> UInt32($0)) & 0xFF) }
                }
                out += (0..<16).map { UInt8(q[$0] & 15) | UInt8(q[$0 + 16] & 15) << 4 }
            default:
                preconditionFailure("no quantizer for \(type)")
            }
        }
        return out
    }

    func makeModel(_ type: Int32, seed: UInt64) throws -> String {
        var rng = SplitMix(seed: seed)
        func random(_ n: Int, _ scale: Float = 0.3) -> [Float] { (0..<n).map { _ in Float.random(in: -scale...scale, using: &rng) } }
        let hd = d / heads, kvd = kvHeads * hd
        var b = GGUFBuilder()
        b.set("general.architecture", .string("llama"))
        b.setLlamaShape(layers: layers, context: 64, embedding: d, feedForward: ffn, heads: heads, kvHeads: kvHeads)
        func matrix(_ name: String, cols: Int, rows: Int, scale: Float = 0.3) {
            b.addTensor(name, type: UInt32(type), dims: [cols, rows], data: quantize(type, random(cols * rows, scale)))
        }
        matrix("token_embd.weight", cols: d, rows: vocab, scale: 1)  // tied output: one repacked matrix
        b.addF32("output_norm.weight", dims: [d], values: (0..<d).map { _ in Float.random(in: 0.8...1.2, using: &rng) })
        for l in 0..<layers {
            let p = "blk.\(l)."
            b.addF32(p + "attn_norm.weight", dims: [d], values: (0..<d).map { _ in Float.random(in: 0.8...1.2, using: &rng) })
            b.addF32(p + "ffn_norm.weight", dims: [d], values: (0..<d).map { _ in Float.random(in: 0.8...1.2, using: &rng) })
            matrix(p + "attn_q.weight", cols: d, rows: d)
            matrix(p + "attn_k.weight", cols: d, rows: kvd)
            matrix(p + "attn_v.weight", cols: d, rows: kvd)
            matrix(p + "attn_output.weight", cols: d, rows: d)
            matrix(p + "ffn_gate.weight", cols: d, rows: ffn)
            matrix(p + "ffn_up.weight", cols: d, rows: ffn)
            matrix(p + "ffn_down.weight", cols: ffn, rows: d)
        }
        return try b.write(name: "repacked-\(type)")
    }

    /// Logits of every position of `tokens`, in one batch or one token per step.
    func logits(_ stage: LlamaStage, _ tokens: [Int], oneByOne: Bool) throws -> [Float] {
        let seq = SequenceID(oneByOne ? 2 : 1)
        let entries = tokens.enumerated().map {
            StageEntry(sequence: seq, position: $0.offset, token: Int32($0.element), wantsLogits: true)
        }
        var all: [Float] = []
        for batch in oneByOne ? entries.map { [$0] } : [entries] {
            guard case let .logits(values, _, _) = try stage.forward(StageBatch(entries: batch)) else {
                XCTFail("no logits")
                return []
            }
            all += values
        }
        stage.removeSequence(seq)
        return all
    }

    func testRepackedModelsBatchInvariantAndCloseToFileLayout() throws {
        let tokens = [3, 17, 42, 8, 8, 49, 0, 21]
        for (n, type) in [CK_TYPE_Q4_0, CK_TYPE_Q5_0, CK_TYPE_Q8_0].map(Int32.init).enumerated() {
            let name = String(cString: ck_isa_name(ck_isa_active())) + " type \(type)"
            let path = try makeModel(type, seed: 500 + UInt64(n))
            let stage = try LlamaStage(file: try GGUFFile(path: path))
            let repacked = stage.weights.layers[0].wq.repacked != nil
            XCTAssertEqual(repacked, ck_repack_preferred(type) == 1, "\(name): repacked when preferred")
            XCTAssertTrue(stage.weights.output?.repacked === stage.weights.embedding?.repacked, "\(name): tied matrix shared")
            let batched = try logits(stage, tokens, oneByOne: false)
            let single = try logits(stage, tokens, oneByOne: true)
            XCTAssertEqual(batched.count, tokens.count * vocab)
            XCTAssertEqual(batched.map(\.bitPattern), single.map(\.bitPattern), "\(name): batched == one by one")

            setenv("CK_NO_REPACK", "1", 1)
            defer { unsetenv("CK_NO_REPACK") }
            let fileStage = try LlamaStage(file: try GGUFFile(path: path))
            XCTAssertNil(fileStage.weights.layers[0].wq.repacked)
            let reference = try logits(fileStage, tokens, oneByOne: false)
            let scale = reference.map(abs).max() ?? 1
            let worst = zip(batched, reference).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 0.02 * scale, "\(name): repacked vs file layout, max |diff| \(worst) of \(scale)")
            if repacked {
                XCTAssertNotEqual(batched.map(\.bitPattern), reference.map(\.bitPattern),
                                  "\(name): the repacked path really ran (its float order differs)")
            }
        }
    }
}
