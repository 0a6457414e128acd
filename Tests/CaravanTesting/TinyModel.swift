import Foundation
import TestSupport

/// A tiny LLaMA-architecture model with a byte-level BPE vocabulary, written as a GGUF file: the
/// model the in-process cluster runs (F32 weights, so stages split anywhere give the single
/// process's bits when activations cross as F32).
///
/// The vocabulary is GPT-2's 256 byte tokens (ids 0-255 are the bytes) and one control token,
/// `<|endoftext|>` (256, the end of generation). The weights are random from a seed; generation is
/// not meaningful text, but it is deterministic, which is what a cluster test compares.
public struct TinyModel: Sendable {
    /// Layers (split across stages).
    public var layers = 6
    /// Width of the hidden state.
    public var embedding = 64
    /// Query heads.
    public var heads = 4
    /// Key/value heads.
    public var kvHeads = 2
    /// Width of the feed-forward layer.
    public var feedForward = 128
    /// Positions per sequence the model declares.
    public var contextLength = 512
    /// Seed of the random weights.
    public var seed: UInt64 = 12

    /// The vocabulary size (256 bytes and the end token).
    public static let vocabularySize = 257
    /// The end-of-generation token.
    public static let endToken: Int32 = 256

    /// The default shape.
    public init() {}

    /// Writes the model to a new temporary file and returns its path.
    public func write() throws -> String {
        var rng = SplitMix(seed: seed)
        func random(_ n: Int, scale: Float) -> [Float] { (0..<n).map { _ in Float.random(in: -scale...scale, using: &rng) } }
        func norm(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: 0.8...1.2, using: &rng) } }
        let d = embedding, kvd = kvHeads * (embedding / heads), vocab = Self.vocabularySize
        var b = GGUFBuilder()
        b.set("general.architecture", .string("llama"))
        b.set("general.name", .string("caravan-tiny"))
        b.setLlamaShape(layers: layers, context: contextLength, embedding: d, feedForward: feedForward, heads: heads, kvHeads: kvHeads)
        b.set("tokenizer.ggml.model", .string("gpt2"))
        b.set("tokenizer.ggml.pre", .string("gpt-2"))
        b.set("tokenizer.ggml.tokens", .strings(Self.byteTokens() + ["<|endoftext|>"]))
        b.set("tokenizer.ggml.token_type", .i32s(Array(repeating: 1, count: 256) + [3]))
        b.set("tokenizer.ggml.merges", .strings([]))
        b.set("tokenizer.ggml.bos_token_id", .u32(UInt32(Self.endToken)))
        b.set("tokenizer.ggml.eos_token_id", .u32(UInt32(Self.endToken)))
        b.set("tokenizer.ggml.add_bos_token", .bool(false))
        b.addF32("token_embd.weight", dims: [d, vocab], values: random(vocab * d, scale: 1))
        b.addF32("output_norm.weight", dims: [d], values: norm(d))
        var output = random(vocab * d, scale: 0.3)
        // The end token's row points nowhere: jobs run to their token limit.
        for i in 0..<d { output[Int(Self.endToken) * d + i] = 0 }
        b.addF32("output.weight", dims: [d, vocab], values: output)
        b.addLlamaBlocks(layers: layers, embedding: d, kvWidth: kvd, feedForward: feedForward, norm: norm) { random($0, scale: 0.3) }
        return try b.write(name: "caravan-tiny")
    }

    /// GPT-2's byte-level spelling of bytes 0...255 (printable bytes stand for themselves, the
    /// others are moved to U+0100 and up).
    static func byteTokens() -> [String] {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var scalars = printable
        var extra = 0
        for byte in 0..<256 where !printable.contains(byte) {
            printable.append(byte)
            scalars.append(256 + extra)
            extra += 1
        }
        var tokens = [String](repeating: "", count: 256)
        for (byte, scalar) in zip(printable, scalars) { tokens[byte] = String(UnicodeScalar(UInt32(scalar))!) }
        return tokens
    }
}
