import Foundation
import XCTest
import TestSupport
@testable import GGUF

final class GGUFFileTests: XCTestCase {
    func testReadsDefaultModel() throws {
        let file = try GGUFFile(path: TestModel.requirePath())
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.architecture, "llama")
        XCTAssertEqual(file.int("llama.block_count"), 30)
        XCTAssertEqual(file.int("llama.embedding_length"), 576)
        XCTAssertEqual(file.int("llama.attention.head_count_kv"), 3)
        XCTAssertEqual(file.float("llama.rope.freq_base"), 100_000)
        XCTAssertEqual(file.string("tokenizer.ggml.pre"), "smollm")
        XCTAssertEqual(file.stringArray("tokenizer.ggml.tokens")?.count, 49152)
        XCTAssertEqual(file.intArray("tokenizer.ggml.token_type")?.count, 49152)
        XCTAssertEqual(file.bool("tokenizer.ggml.add_bos_token"), false)
        XCTAssertEqual(file.tensorInfos.count, 272)
        let emb = try file.requireTensor("token_embd.weight")
        XCTAssertEqual(emb.type, .q8_0)
        XCTAssertEqual(emb.dimensions, [576, 49152])
        XCTAssertEqual(emb.byteCount, 576 / 32 * 34 * 49152)
        let q = try file.requireTensor("blk.0.attn_q.weight")
        XCTAssertEqual(q.type, .q4_1)
        XCTAssertEqual(q.rowBytes, 576 / 32 * 20)
        XCTAssertNil(file.tensor(named: "output.weight"))
        // The last tensor ends inside the file.
        let last = file.tensorInfos.max { $0.relativeOffset < $1.relativeOffset }!
        XCTAssertLessThanOrEqual(file.dataOffset + last.relativeOffset + last.byteCount, file.fileSize)
    }

    func testSyntheticFileRoundTrip() throws {
        var b = GGUFBuilder()
        b.set("general.architecture", .string("llama"))
        b.set("x.count", .u32(7))
        b.set("x.neg", .i32(-3))
        b.set("x.f", .f32(1.5))
        b.set("x.names", .strings(["a", "bé", ""]))
        b.set("x.ids", .i32s([1, -2, 3]))
        b.addF32("t.weight", dims: [4, 2], values: [1, 2, 3, 4, 5, 6, 7, 8])
        let file = try GGUFFile(path: b.write())
        XCTAssertEqual(file.int("x.count"), 7)
        XCTAssertEqual(file.int("x.neg"), -3)
        XCTAssertEqual(file.float("x.f"), 1.5)
        XCTAssertEqual(file.stringArray("x.names"), ["a", "bé", ""])
        XCTAssertEqual(file.intArray("x.ids"), [1, -2, 3])
        XCTAssertNil(file.string("x.count"))
        let t = try file.requireTensor("t.weight")
        XCTAssertEqual(t.rowCount, 2)
        let floats = file.data(of: t).assumingMemoryBound(to: Float.self)
        XCTAssertEqual(floats[5], 6)
        XCTAssertThrowsError(try file.requireTensor("nope")) { error in
            XCTAssertEqual(error as? GGUFError, .missingTensor(path: file.path, tensor: "nope"))
        }
    }
}
