import Foundation

/// Writes small GGUF v3 files for tests (synthetic models, corrupt variants).
public struct GGUFBuilder {
    /// A metadata value to write.
    public enum Value {
        case u32(UInt32), i32(Int32), f32(Float), bool(Bool), string(String)
        case strings([String]), i32s([Int32]), f32s([Float])
    }

    private var kvs: [(String, Value)] = []
    private var tensors: [(name: String, type: UInt32, dims: [Int], data: [UInt8])] = []
    /// Data alignment written as `general.alignment` when not 32.
    public var alignment = 32

    public init() {}

    /// Adds a metadata key.
    public mutating func set(_ key: String, _ value: Value) { kvs.append((key, value)) }

    /// Adds a tensor with raw bytes (`dims` innermost first).
    public mutating func addTensor(_ name: String, type: UInt32, dims: [Int], data: [UInt8]) {
        tensors.append((name, type, dims, data))
    }

    /// Adds an F32 tensor.
    public mutating func addF32(_ name: String, dims: [Int], values: [Float]) {
        precondition(values.count == dims.reduce(1, *))
        var bytes = [UInt8](); bytes.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        addTensor(name, type: 0, dims: dims, data: bytes)
    }

    /// The `llama.*` shape keys of a test model: block count, context, widths, heads, RMS epsilon
    /// 1e-5 and RoPE base 10000 (after `general.architecture`).
    public mutating func setLlamaShape(layers: Int, context: Int, embedding: Int, feedForward: Int, heads: Int, kvHeads: Int) {
        set("llama.block_count", .u32(UInt32(layers)))
        set("llama.context_length", .u32(UInt32(context)))
        set("llama.embedding_length", .u32(UInt32(embedding)))
        set("llama.feed_forward_length", .u32(UInt32(feedForward)))
        set("llama.attention.head_count", .u32(UInt32(heads)))
        set("llama.attention.head_count_kv", .u32(UInt32(kvHeads)))
        set("llama.attention.layer_norm_rms_epsilon", .f32(1e-5))
        set("llama.rope.freq_base", .f32(10_000))
    }

    /// The nine F32 tensors of each of `layers` LLaMA blocks of width `d` (keys and values `kvd`
    /// wide, feed-forward `ffn`): the two norms' values from `norm`, the seven matrices' from
    /// `weight`, each asked for with its element count, in the order the tensors are written.
    public mutating func addLlamaBlocks(layers: Int, embedding d: Int, kvWidth kvd: Int, feedForward ffn: Int,
                                        norm: (Int) -> [Float], weight: (Int) -> [Float]) {
        for l in 0..<layers {
            let p = "blk.\(l)."
            addF32(p + "attn_norm.weight", dims: [d], values: norm(d))
            addF32(p + "attn_q.weight", dims: [d, d], values: weight(d * d))
            addF32(p + "attn_k.weight", dims: [d, kvd], values: weight(kvd * d))
            addF32(p + "attn_v.weight", dims: [d, kvd], values: weight(kvd * d))
            addF32(p + "attn_output.weight", dims: [d, d], values: weight(d * d))
            addF32(p + "ffn_norm.weight", dims: [d], values: norm(d))
            addF32(p + "ffn_gate.weight", dims: [d, ffn], values: weight(ffn * d))
            addF32(p + "ffn_up.weight", dims: [d, ffn], values: weight(ffn * d))
            addF32(p + "ffn_down.weight", dims: [ffn, d], values: weight(d * ffn))
        }
    }

    /// The file's bytes.
    public func build() -> [UInt8] {
        var out = [UInt8]()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        var allKVs = kvs
        if alignment != 32 { allKVs.insert(("general.alignment", .u32(UInt32(alignment))), at: 0) }
        u32(0x4655_4747); u32(3); u64(UInt64(tensors.count)); u64(UInt64(allKVs.count))
        for (k, v) in allKVs {
            str(k)
            switch v {
            case let .u32(x): u32(4); u32(x)
            case let .i32(x): u32(5); u32(UInt32(bitPattern: x))
            case let .f32(x): u32(6); u32(x.bitPattern)
            case let .bool(x): u32(7); out.append(x ? 1 : 0)
            case let .string(s): u32(8); str(s)
            case let .strings(a): u32(9); u32(8); u64(UInt64(a.count)); a.forEach(str)
            case let .i32s(a): u32(9); u32(5); u64(UInt64(a.count)); a.forEach { u32(UInt32(bitPattern: $0)) }
            case let .f32s(a): u32(9); u32(6); u64(UInt64(a.count)); a.forEach { u32($0.bitPattern) }
            }
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        for (i, t) in tensors.enumerated() {
            str(t.name); u32(UInt32(t.dims.count)); t.dims.forEach { u64(UInt64($0)) }
            u32(t.type); u64(UInt64(offsets[i]))
        }
        while out.count % alignment != 0 { out.append(0) }
        for t in tensors {
            out.append(contentsOf: t.data)
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }

    /// Writes the file to a new temporary path and returns it.
    public func write(name: String = "test") throws -> String {
        try TempFiles.write(build(), name: name + ".gguf")
    }
}

/// Temporary files for tests.
public enum TempFiles {
    /// This test process's directory of temporary files.
    static var directory: URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("caravan-tests-\(ProcessInfo.processInfo.processIdentifier)")
    }

    /// Removes ``directory`` when the process exits (registered once, by the first write): each
    /// test process used to leave its models behind in the temporary directory.
    private static let removedAtExit: Void = {
        atexit { try? FileManager.default.removeItem(at: TempFiles.directory) }
    }()

    /// Writes `bytes` to a fresh temporary file and returns its path.
    public static func write(_ bytes: [UInt8], name: String) throws -> String {
        _ = removedAtExit
        let dir = directory
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(UUID().uuidString + "-" + name)
        try Data(bytes).write(to: url)
        return url.path
    }
}
