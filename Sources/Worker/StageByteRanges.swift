import CaravanCore
import GGUF

/// Where a tensor lies in a model file (absolute byte offsets).
public struct TensorExtent: Sendable, Equatable {
    /// The tensor's GGUF name, e.g. `blk.3.attn_q.weight`.
    public var name: String
    /// Its bytes in the file.
    public var bytes: Range<UInt64>

    /// A tensor `name` occupying `bytes`.
    public init(name: String, bytes: Range<UInt64>) {
        self.name = name
        self.bytes = bytes
    }
}

/// Which bytes of a GGUF model file a pipeline stage reads, and which fixed-size blocks of the
/// file hold them. Pure: no I/O.
///
/// A stage running blocks `layers` of a LLaMA-family model reads the GGUF header, metadata and
/// tensor index (`[0, dataOffset)`), its `blk.N.*` tensors, `token_embd.weight` when it is the
/// first stage, `output_norm.weight` and `output.weight` when it is the last (or
/// `token_embd.weight` when the output is tied to the embedding, i.e. there is no
/// `output.weight`), and any other tensor outside the blocks (e.g. `rope_freqs.weight`), which
/// every stage may use.
public enum StageByteRanges {
    /// The names of the tensors in `tensorNames` that a stage running `layers` of a
    /// `layerCount`-block model needs, in the order given.
    public static func neededTensors(_ tensorNames: [String], layers: LayerRange, layerCount: Int) -> [String] {
        let first = layers.start == 0
        let last = layers.end == layerCount
        let tied = !tensorNames.contains("output.weight")
        return tensorNames.filter { name in
            if name.hasPrefix("blk.") {
                let parts = name.split(separator: ".", maxSplits: 2)
                guard parts.count > 1, let n = Int(parts[1]) else { return true }  // unknown block naming: keep
                return layers.contains(n)
            }
            switch name {
            case "token_embd.weight": return first || (last && tied)
            case "output.weight", "output_norm.weight": return last
            default: return true
            }
        }
    }

    /// The sorted, merged byte ranges a stage needs: the header `[0, headerBytes)` plus the
    /// needed tensors of `tensors`.
    public static func ranges(headerBytes: UInt64, tensors: [TensorExtent], layers: LayerRange,
                              layerCount: Int) -> [Range<UInt64>] {
        let needed = Set(neededTensors(tensors.map(\.name), layers: layers, layerCount: layerCount))
        var ranges: [Range<UInt64>] = headerBytes > 0 ? [0..<headerBytes] : []
        ranges += tensors.filter { needed.contains($0.name) && !$0.bytes.isEmpty }.map(\.bytes)
        return merge(ranges)
    }

    /// The byte ranges a stage running `layers` needs in the model `file` (whose header was
    /// parsed; tensor bytes need not be present yet).
    public static func ranges(file: GGUFFile, layers: LayerRange, layerCount: Int) -> [Range<UInt64>] {
        let base = UInt64(file.dataOffset)
        let tensors = file.tensorInfos.map { t in
            TensorExtent(name: t.name, bytes: (base + UInt64(t.relativeOffset))..<(base + UInt64(t.relativeOffset) + UInt64(t.byteCount)))
        }
        return ranges(headerBytes: base, tensors: tensors, layers: layers, layerCount: layerCount)
    }

    /// What a partial copy of a model holds whole, given the `blockSize`-byte blocks of the
    /// `fileSize`-byte file that are present: the transformer blocks all of whose `blk.N.*`
    /// tensors lie in present blocks, the token embedding, and the output (`output.weight` and
    /// `output_norm.weight`, or the embedding and the norm when the output is tied to it).
    public static func held(tensors: [TensorExtent], presentBlocks: Set<Int>, blockSize: UInt64,
                            fileSize: UInt64) -> (layers: [Int], embedding: Bool, output: Bool) {
        func present(_ name: String) -> Bool? {
            guard let t = tensors.first(where: { $0.name == name }) else { return nil }
            return blocks(covering: [t.bytes], blockSize: blockSize, fileSize: fileSize).allSatisfy(presentBlocks.contains)
        }
        var complete: [Int: Bool] = [:]
        for t in tensors where t.name.hasPrefix("blk.") {
            let parts = t.name.split(separator: ".", maxSplits: 2)
            guard parts.count > 1, let n = Int(parts[1]), n >= 0 else { continue }
            let whole = blocks(covering: [t.bytes], blockSize: blockSize, fileSize: fileSize).allSatisfy(presentBlocks.contains)
            complete[n] = (complete[n] ?? true) && whole
        }
        let embedding = present("token_embd.weight") ?? false
        let norm = present("output_norm.weight") ?? false
        let output = norm && (present("output.weight") ?? embedding)
        return (complete.filter(\.value).map(\.key).sorted(), embedding, output)
    }

    /// Sorts `ranges` and merges overlapping or touching ones; empty ranges vanish.
    public static func merge(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        for r in ranges.filter({ !$0.isEmpty }).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let lastRange = out.last, r.lowerBound <= lastRange.upperBound {
                out[out.count - 1] = lastRange.lowerBound..<max(lastRange.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// Total bytes of `ranges` (assumed merged).
    public static func byteCount(_ ranges: [Range<UInt64>]) -> UInt64 {
        ranges.reduce(0) { $0 + UInt64($1.count) }
    }

    /// Indices of the `blockSize`-byte blocks of a `fileSize`-byte file that hold any byte of
    /// `ranges`, sorted and unique. Bytes at or past `fileSize` are ignored.
    public static func blocks(covering ranges: [Range<UInt64>], blockSize: UInt64, fileSize: UInt64) -> [Int] {
        precondition(blockSize > 0, "block size must be positive")
        var out: [Int] = []
        for r in merge(ranges) {
            let end = min(r.upperBound, fileSize)
            guard r.lowerBound < end else { continue }
            let firstBlock = Int(r.lowerBound / blockSize)
            let lastBlock = Int((end - 1) / blockSize)
            for b in firstBlock...lastBlock where out.last.map({ b > $0 }) ?? true { out.append(b) }
        }
        return out
    }

    /// The bytes of block `index` of a `fileSize`-byte file (the last block may be short).
    public static func blockBytes(_ index: Int, blockSize: UInt64, fileSize: UInt64) -> Range<UInt64> {
        let start = min(UInt64(index) * blockSize, fileSize)
        return start..<min(start + blockSize, fileSize)
    }
}
