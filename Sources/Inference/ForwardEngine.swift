import CaravanCore
import Llama

/// Computes a forward step of the whole model for a batch of rows: a local stage holding every
/// layer, or a pipeline of remote stages. Generation code talks only to this seam.
public protocol ForwardEngine: AnyObject, Sendable {
    /// Rows of the output matrix (logits per row).
    var vocabularySize: Int { get }
    /// Maximum positions per sequence.
    var contextLimit: Int { get }
    /// Runs all layers over `batch`; returns logits for the rows that want them, or, when every
    /// such row carries a ``SamplingRequest``, may return the tokens sampled for them instead.
    func forward(_ batch: StageBatch) async throws -> StageOutput
    /// Frees everything kept for `sequence` (its KV cache).
    func release(_ sequence: SequenceID) async
}

/// A ``ForwardEngine`` running every layer in this process with one ``LlamaStage``. It returns
/// logits (the session samples them in the same process; nothing travels).
public actor LocalEngine: ForwardEngine {
    private let stage: LlamaStage
    public nonisolated let vocabularySize: Int
    public nonisolated let contextLimit: Int

    /// Wraps a stage that holds all layers.
    public init(stage: LlamaStage) {
        precondition(stage.isFirst && stage.isLast, "LocalEngine needs a stage with every layer")
        self.stage = stage
        self.vocabularySize = stage.configuration.vocabularySize
        self.contextLimit = stage.contextLimit
    }

    public func forward(_ batch: StageBatch) async throws -> StageOutput {
        try stage.forward(batch)
    }

    public func release(_ sequence: SequenceID) async {
        stage.removeSequence(sequence)
    }
}
