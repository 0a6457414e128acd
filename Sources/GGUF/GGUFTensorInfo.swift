/// One entry of a GGUF file's tensor index.
public struct GGUFTensorInfo: Sendable, Equatable {
    /// Tensor name as in the file, e.g. `blk.3.attn_q.weight`.
    public let name: String
    /// Element type.
    public let type: GGMLType
    /// Dimensions, innermost (contiguous) first, as ggml's `ne`: a weight matrix is `[columns, rows]`.
    public let dimensions: [Int]
    /// Product of the dimensions.
    public let elementCount: Int
    /// Bytes the tensor occupies in the data section.
    public let byteCount: Int
    /// Offset from the start of the data section.
    public let relativeOffset: Int

    /// Number of rows when seen as a matrix of `dimensions[0]`-element rows.
    public var rowCount: Int { elementCount / dimensions[0] }
    /// Bytes per row.
    public var rowBytes: Int { byteCount / rowCount }
}
