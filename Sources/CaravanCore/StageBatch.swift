/// One row of a stage's input: a token (or hidden state) of one sequence at one position.
public struct StageEntry: Sendable, Equatable {
    /// The sequence the row belongs to.
    public var sequence: SequenceID
    /// Position of the token in its sequence (0-based).
    public var position: Int
    /// The token id; required by the first stage, ignored by the others.
    public var token: Int32?
    /// Whether the last stage should return logits for this row.
    public var wantsLogits: Bool
    /// For a row that wants logits: how to sample the next token (at `position + 1`) where the
    /// logits are computed, so that only the token travels back (``StageOutput/sampled(rows:entryIndices:)``).
    /// Nil: the caller samples from the logits itself.
    public var sampling: SamplingRequest?

    /// Creates a row; `sampling` only makes sense with `wantsLogits`.
    public init(sequence: SequenceID, position: Int, token: Int32? = nil, wantsLogits: Bool = false,
                sampling: SamplingRequest? = nil) {
        precondition(sampling == nil || wantsLogits, "a sampling request needs a row that wants logits")
        self.sequence = sequence
        self.position = position
        self.token = token
        self.wantsLogits = wantsLogits
        self.sampling = sampling
    }
}

/// The input of one forward step of a stage.
///
/// Rows of the same sequence must have consecutive positions in order, starting at most at the
/// sequence's cached length (starting earlier rewrites the cache from there on). Several
/// sequences are computed in one pass over the weights.
public struct StageBatch: Sendable {
    /// The rows.
    public var entries: [StageEntry]
    /// For stages other than the first: the previous stage's hidden states,
    /// `[entries.count, embeddingLength]` row-major.
    public var hidden: [Float]?

    public init(entries: [StageEntry], hidden: [Float]? = nil) {
        self.entries = entries
        self.hidden = hidden
    }
}

/// What a stage returns.
public enum StageOutput: Sendable {
    /// Hidden states after the stage's last layer, `[rows, width]` row-major (one row per entry).
    case hidden(values: [Float], rows: Int, width: Int)
    /// Logits of the rows that wanted them, in entry order, `[rows, vocabulary]` row-major;
    /// `entryIndices[i]` is the batch row of logits row `i`.
    case logits(values: [Float], entryIndices: [Int], vocabulary: Int)
    /// The tokens sampled on the stage for the rows that wanted logits, when every such row carried
    /// a ``SamplingRequest``: `rows[i]` belongs to batch row `entryIndices[i]`, in entry order.
    case sampled(rows: [SampledRow], entryIndices: [Int])
}

/// Why a stage refused a batch. The stage's state is unchanged when it throws.
public enum StageError: Error, Equatable, CustomStringConvertible, Sendable {
    case emptyBatch
    case missingToken(row: Int)
    case tokenOutOfRange(row: Int, token: Int32, vocabulary: Int)
    case hiddenShape(expected: Int, actual: Int)
    case positionGap(sequence: SequenceID, position: Int, cached: Int)
    case positionOrder(sequence: SequenceID, row: Int)
    case contextFull(sequence: SequenceID, position: Int, limit: Int)
    case batchTooLarge(rows: Int, limit: Int)

    public var description: String {
        switch self {
        case .emptyBatch: return "empty batch"
        case let .missingToken(r): return "row \(r) has no token id (the first stage needs tokens)"
        case let .tokenOutOfRange(r, t, v): return "row \(r): token id \(t) is outside the vocabulary (0..<\(v))"
        case let .hiddenShape(e, a): return "hidden states have \(a) values, expected \(e)"
        case let .positionGap(s, p, c): return "\(s): position \(p) leaves a gap after the \(c) cached positions"
        case let .positionOrder(s, r): return "\(s): row \(r) is not at the position after the previous row"
        case let .contextFull(s, p, l): return "\(s): position \(p) is beyond the context limit \(l)"
        case let .batchTooLarge(r, l): return "batch of \(r) rows exceeds the limit of \(l)"
        }
    }
}
