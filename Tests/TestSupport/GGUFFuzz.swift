import Foundation

/// Structure-aware mutation of GGUF files for the model-file fuzzers: the header is walked to
/// find every field a reader trusts (counts, string and array lengths, value and element types,
/// dimension counts, dimensions, tensor types and offsets), and a mutation writes a hostile value
/// into one of them, truncates the file, or falls back to byte-level mutations.
public enum GGUFFuzz {
    /// What a header field holds.
    public enum Kind: Sendable, CaseIterable {
        case tensorCount, metadataCount, stringLength, valueType, elementType, arrayLength
        case dimensionCount, dimension, tensorType, tensorOffset, scalar
    }

    /// A field: where it is, how wide (4 or 8 bytes, 1 for bools), what it holds.
    public struct Field: Sendable {
        public var offset: Int
        public var width: Int
        public var kind: Kind
    }

    /// The fields of a well-formed GGUF v3 header (as far as it can be walked).
    public static func fields(_ b: [UInt8]) -> [Field] {
        var out: [Field] = []
        var at = 0
        func u32() -> UInt32? {
            guard at + 4 <= b.count else { return nil }
            defer { at += 4 }
            return b[at..<at + 4].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        }
        func u64() -> UInt64? {
            guard at + 8 <= b.count else { return nil }
            defer { at += 8 }
            return b[at..<at + 8].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        }
        func field(_ kind: Kind, _ width: Int) { out.append(Field(offset: at, width: width, kind: kind)) }
        func string() -> Bool {
            field(.stringLength, 8)
            guard let n = u64(), n <= UInt64(b.count - at) else { return false }
            at += Int(n)
            return true
        }
        func scalarWidth(_ type: UInt32) -> Int? {
            switch type {
            case 0, 1, 7: return 1
            case 2, 3: return 2
            case 4, 5, 6: return 4
            case 10, 11, 12: return 8
            default: return nil
            }
        }
        func value(_ type: UInt32, depth: Int) -> Bool {
            if let w = scalarWidth(type) {
                field(.scalar, w)
                guard at + w <= b.count else { return false }
                at += w
                return true
            }
            switch type {
            case 8: return string()
            case 9:
                guard depth < 3 else { return false }
                field(.elementType, 4)
                guard let element = u32() else { return false }
                field(.arrayLength, 8)
                guard let n = u64(), n <= UInt64(b.count) else { return false }
                for _ in 0..<n where !value(element, depth: depth + 1) { return false }
                return true
            default: return false
            }
        }
        guard u32() == 0x4655_4747, u32() != nil else { return out }
        field(.tensorCount, 8)
        guard let tensors = u64(), tensors <= UInt64(b.count) else { return out }
        field(.metadataCount, 8)
        guard let kvs = u64(), kvs <= UInt64(b.count) else { return out }
        for _ in 0..<kvs {
            guard string() else { return out }
            field(.valueType, 4)
            guard let type = u32(), value(type, depth: 0) else { return out }
        }
        for _ in 0..<tensors {
            guard string() else { return out }
            field(.dimensionCount, 4)
            guard let dims = u32(), dims <= 8 else { return out }
            for _ in 0..<dims {
                field(.dimension, 8)
                guard u64() != nil else { return out }
            }
            field(.tensorType, 4)
            guard u32() != nil else { return out }
            field(.tensorOffset, 8)
            guard u64() != nil else { return out }
        }
        return out
    }

    /// A hostile value for a field of `kind` in a file of `size` bytes.
    static func hostileValue(_ kind: Kind, size: Int, _ rng: inout SplitMix) -> UInt64 {
        switch kind {
        case .tensorCount, .metadataCount, .arrayLength, .stringLength:
            return rng.pick([UInt64(size), UInt64(size / 2), UInt64(size / 13), 1 << 28, 1 << 30, 1 << 32,
                             UInt64(Int64.max), .max, rng.hostileUInt64()])
        case .valueType, .elementType: return UInt64(rng.pick([9, 9, 8, 13, 255, 0xFFFF_FFFF, rng.below(13)]))
        case .dimensionCount: return UInt64(rng.pick([0, 1, 4, 5, 255]))
        case .dimension: return rng.pick([0, 1, 3, 31, 1 << 31, 1 << 32, 1 << 62, UInt64(Int64.max), .max, rng.hostileUInt64()])
        case .tensorType: return UInt64(rng.pick([0, 1, 2, 8, 12, 14, 30, 39, 40, 1000]))
        case .tensorOffset: return rng.pick([UInt64(size), UInt64(size) &- 32, 1 << 40, UInt64(Int64.max) & ~31, .max & ~31, 33, rng.hostileUInt64()])
        case .scalar: return rng.hostileUInt64()
        }
    }

    /// `file` with 1 to 3 mutations: hostile values in header fields (most of the time), a
    /// truncation, or byte-level mutations.
    public static func mutate(_ file: [UInt8], _ rng: inout SplitMix) -> [UInt8] {
        var b = file
        for _ in 0...rng.below(3) {
            let fields = Self.fields(b)
            switch rng.below(8) {
            case 0:
                b = Array(b.prefix(rng.below(b.count + 1)))
            case 1:
                b = ByteMutator.mutate(b, &rng)
            default:
                guard let f = fields.isEmpty ? nil : rng.pick(fields) else { b = ByteMutator.mutate(b, &rng); continue }
                let v = hostileValue(f.kind, size: b.count, &rng)
                for k in 0..<f.width where f.offset + k < b.count { b[f.offset + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
            }
        }
        return b
    }

    /// A tiny LLaMA model (2 layers, width 8, a byte-level BPE vocabulary of 24 tokens with merges,
    /// token types and scores, a chat template): a valid seed for the model-file fuzzers.
    public static func tinyModel(seed: UInt64) -> [UInt8] {
        var rng = SplitMix(seed: seed)
        let (d, ffn, layers, kvd) = (8, 16, 2, 4)
        var tokens = ["<s>", "</s>", "<unk>", "a", "b", "c", "d", "\u{0120}", "\u{0120}a", "ab", "abc", "cd", "<|im_start|>", "<|im_end|>"]
        tokens += (0..<10).map { "\($0)" }
        let vocab = tokens.count
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float(Int(rng.below(2001)) - 1000) / 4000 } }
        var b = GGUFBuilder()
        b.set("general.architecture", .string("llama"))
        b.set("general.name", .string("fuzz-seed"))
        b.setLlamaShape(layers: layers, context: 64, embedding: d, feedForward: ffn, heads: 2, kvHeads: 1)
        b.set("tokenizer.ggml.model", .string("gpt2"))
        b.set("tokenizer.ggml.pre", .string("smollm"))
        b.set("tokenizer.ggml.tokens", .strings(tokens))
        b.set("tokenizer.ggml.token_type", .i32s((0..<vocab).map { [0, 1, 12, 13].contains($0) ? 3 : 1 }))
        b.set("tokenizer.ggml.scores", .f32s((0..<vocab).map { -Float($0) }))
        b.set("tokenizer.ggml.merges", .strings(["a b", "ab c", "c d", "\u{0120} a"]))
        b.set("tokenizer.ggml.bos_token_id", .u32(0))
        b.set("tokenizer.ggml.eos_token_id", .u32(1))
        b.set("tokenizer.chat_template", .string("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"))
        b.addF32("token_embd.weight", dims: [d, vocab], values: random(d * vocab))
        b.addF32("output_norm.weight", dims: [d], values: random(d))
        b.addLlamaBlocks(layers: layers, embedding: d, kvWidth: kvd, feedForward: ffn, norm: random, weight: random)
        return b.build()
    }
}
