/// One row of a pipeline step: which sequence it belongs to and where.
public struct SequenceRow: Sendable, Equatable {
    /// The sequence (KV-cache slot of a job) this row belongs to.
    public var sequenceID: UInt64
    /// Position of the token in the sequence, 0-based.
    public var position: UInt32
    /// The input token for first-stage rows; nil when the row is an activation.
    public var tokenID: UInt32?
    /// True when the last stage must sample a token for this row.
    public var sample: Bool
    /// With `sample`: how the last stage samples the token itself (carried as received;
    /// `StageBatch(step:)` validates it into a `SamplingRequest`). Nil: the last stage returns the row's logits.
    public var sampling: Caravan_V1_SamplingRequest?

    /// Creates a row.
    public init(sequenceID: UInt64, position: UInt32, tokenID: UInt32? = nil, sample: Bool = false,
                sampling: Caravan_V1_SamplingRequest? = nil) {
        self.sequenceID = sequenceID
        self.position = position
        self.tokenID = tokenID
        self.sample = sample
        self.sampling = sampling
    }
}

/// A pipeline step travelling from one stage to the next: the rows it covers and, except for
/// first-stage input (token ids only), their activations.
public struct ActivationStep: Sendable {
    /// A label of the pipeline that sent the step, for logs (the coordinator writes `epoch-N`;
    /// non-empty). A step carries rows of many jobs, one sequence each; on the wire this is still
    /// the field `job_id` (number 1), a name that predates batching.
    public var pipelineLabel: String
    /// The plan epoch the sender runs (positive).
    public var planEpoch: UInt64
    /// Step number within the plan epoch (its lanes share the numbering).
    public var stepID: UInt64
    /// One entry per tensor row (non-empty).
    public var rows: [SequenceRow]
    /// `[rows.count, hidden]` activations; nil for first-stage input, where every row has a token.
    public var tensor: ActivationTensor?
    /// Layer-positions the stages before the receiver recomputed for replayed rows (after a
    /// re-plan); each stage adds its own.
    public var replayedLayerPositions: UInt64 = 0

    /// Creates a step (validated when encoded).
    public init(pipelineLabel: String, planEpoch: UInt64, stepID: UInt64, rows: [SequenceRow], tensor: ActivationTensor?) {
        self.pipelineLabel = pipelineLabel
        self.planEpoch = planEpoch
        self.stepID = stepID
        self.rows = rows
        self.tensor = tensor
    }
}

/// The token sampled for one sequence in a step.
public struct SampledToken: Sendable, Equatable {
    /// The sequence this token extends.
    public var sequenceID: UInt64
    /// Position the new token takes.
    public var position: UInt32
    /// The token id.
    public var tokenID: UInt32
    /// Its log-probability, when asked for.
    public var logprob: Float?
    /// Most likely alternatives (token id, logprob), best first.
    public var topLogprobs: [(tokenID: UInt32, logprob: Float)]

    /// Creates a sampled token.
    public init(sequenceID: UInt64, position: UInt32, tokenID: UInt32, logprob: Float? = nil,
                topLogprobs: [(tokenID: UInt32, logprob: Float)] = []) {
        self.sequenceID = sequenceID
        self.position = position
        self.tokenID = tokenID
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }

    /// Field-wise equality (tuples are not `Equatable`, so it is spelled out).
    public static func == (a: SampledToken, b: SampledToken) -> Bool {
        a.sequenceID == b.sequenceID && a.position == b.position && a.tokenID == b.tokenID
            && a.logprob == b.logprob && a.topLogprobs.elementsEqual(b.topLogprobs) { $0 == $1 }
    }
}

/// The outcome of a step, from the last stage (or a failing stage) to the coordinator: sampled
/// tokens when the last stage samples, or the logits of the rows that asked for them when the
/// coordinator samples, or an error.
public struct StepOutcome: Sendable, Equatable {
    /// The label of the step's pipeline (``ActivationStep/pipelineLabel``; the wire field `job_id`).
    public var pipelineLabel: String
    /// The plan epoch the step ran under.
    public var planEpoch: UInt64
    /// The step id.
    public var stepID: UInt64
    /// Sampled tokens in row order.
    public var tokens: [SampledToken]
    /// Set when the step failed (tokens and logits then empty).
    public var error: String?
    /// `[logitsRows.count, vocabulary]` logits, travelling as the payload frame; nil when absent.
    public var logits: ActivationTensor?
    /// The rows the logits belong to (the step's rows that had `sample` set), in row order.
    public var logitsRows: [SequenceRow]
    /// Layer-positions every stage together recomputed for the step's replayed rows.
    public var replayedLayerPositions: UInt64 = 0

    /// Creates an outcome.
    public init(pipelineLabel: String, planEpoch: UInt64, stepID: UInt64, tokens: [SampledToken], error: String? = nil,
                logits: ActivationTensor? = nil, logitsRows: [SequenceRow] = []) {
        self.pipelineLabel = pipelineLabel
        self.planEpoch = planEpoch
        self.stepID = stepID
        self.tokens = tokens
        self.error = error
        self.logits = logits
        self.logitsRows = logitsRows
    }

    /// Equal when every field is, logits compared by dtype, shape and bytes.
    public static func == (a: StepOutcome, b: StepOutcome) -> Bool {
        guard a.pipelineLabel == b.pipelineLabel, a.planEpoch == b.planEpoch, a.stepID == b.stepID, a.tokens == b.tokens,
              a.error == b.error, a.logitsRows == b.logitsRows,
              a.replayedLayerPositions == b.replayedLayerPositions else { return false }
        switch (a.logits, b.logits) {
        case (nil, nil): return true
        case let (x?, y?):
            return x.dtype == y.dtype && x.shape == y.shape
                && x.withUnsafeBytes { xb in y.withUnsafeBytes { yb in xb.elementsEqual(yb) } }
        default: return false
        }
    }
}
