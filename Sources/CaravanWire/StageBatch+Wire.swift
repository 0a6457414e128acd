import CaravanCore

/// Why a validated wire step does not fit the stage or batch it is meant for.
public enum StepConversionError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A token id does not fit the model's token type.
    case tokenOutOfRange(row: Int, token: UInt32)
    /// A non-first stage got a step without activations, or a first stage got activations.
    case wrongInput(String)
    /// The activation width differs from the model's hidden size.
    case widthMismatch(expected: Int, actual: Int)
    /// Logits rows name rows the step did not ask for, or come with the wrong shape.
    case logitsMismatch(String)
    /// A row's sampling request is invalid (bad parameter values, or not on a row that samples).
    case invalidSampling(row: Int, reason: String)
    /// Sampled tokens do not match the rows that asked for them, or are out of range.
    case sampledMismatch(String)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(row, token): "row \(row): token id \(token) is out of range"
        case let .wrongInput(why): why
        case let .widthMismatch(e, a): "activations are \(a) wide, the model's hidden size is \(e)"
        case let .logitsMismatch(why): "logits do not match the step: \(why)"
        case let .invalidSampling(row, why): "row \(row): invalid sampling request: \(why)"
        case let .sampledMismatch(why): "sampled tokens do not match the step: \(why)"
        }
    }
}

extension SequenceRow {
    /// The wire row for a stage entry.
    public init(entry: StageEntry) {
        self.init(sequenceID: entry.sequence.rawValue, position: UInt32(clamping: entry.position),
                  tokenID: entry.token.map { UInt32(bitPattern: $0) }, sample: entry.wantsLogits,
                  sampling: entry.sampling?.wire)
    }

    /// The stage entry for this row (token id checked to fit `Int32`, sampling request validated).
    func entry(row: Int) throws(StepConversionError) -> StageEntry {
        var token: Int32?
        if let id = tokenID {
            guard id <= UInt32(Int32.max) else { throw .tokenOutOfRange(row: row, token: id) }
            token = Int32(id)
        }
        var request: SamplingRequest?
        if let sampling {
            guard sample else { throw .invalidSampling(row: row, reason: "the row does not sample (sample is false)") }
            request = try SamplingRequest(wire: sampling, row: row)
        }
        return StageEntry(sequence: SequenceID(sequenceID), position: Int(position), token: token, wantsLogits: sample,
                          sampling: request)
    }
}

extension StageBatch {
    /// The input of a stage for a received step: token rows for the first stage (`embedsTokens`),
    /// `[rows, hiddenWidth]` activations otherwise.
    public init(step: ActivationStep, embedsTokens: Bool, hiddenWidth: Int) throws(StepConversionError) {
        var entries: [StageEntry] = []
        entries.reserveCapacity(step.rows.count)
        for (i, row) in step.rows.enumerated() { entries.append(try row.entry(row: i)) }
        if embedsTokens {
            guard step.tensor == nil else { throw .wrongInput("the first stage takes token ids, not activations") }
            self.init(entries: entries)
        } else {
            guard let tensor = step.tensor else { throw .wrongInput("this stage needs activations, the step has only token ids") }
            guard tensor.shape.count == 2, tensor.shape[1] == hiddenWidth else {
                throw .widthMismatch(expected: hiddenWidth, actual: tensor.shape.last ?? 0)
            }
            self.init(entries: entries, hidden: tensor.floats())
        }
    }
}

extension ActivationStep {
    /// First-stage input for `batch` (token ids only, no tensor).
    public init(tokens batch: StageBatch, pipelineLabel: String, planEpoch: UInt64, stepID: UInt64) {
        self.init(pipelineLabel: pipelineLabel, planEpoch: planEpoch, stepID: stepID,
                  rows: batch.entries.map(SequenceRow.init(entry:)), tensor: nil)
    }

    /// The step carrying a stage's hidden output on to the next stage: same rows (without token ids)
    /// and `[rows, width]` activations in `dtype`.
    public func forwarding(hidden values: [Float], rows: Int, width: Int, dtype: TensorDType) throws(WireError) -> ActivationStep {
        let tensor = try ActivationTensor(values: values, shape: [rows, width], dtype: dtype)
        let plainRows = self.rows.map {
            SequenceRow(sequenceID: $0.sequenceID, position: $0.position, tokenID: nil, sample: $0.sample, sampling: $0.sampling)
        }
        return ActivationStep(pipelineLabel: pipelineLabel, planEpoch: planEpoch, stepID: stepID, rows: plainRows, tensor: tensor)
    }

    /// The result of the last stage: logits of the rows that wanted them, in `dtype` (their rows
    /// named without sampling requests).
    public func outcome(logits values: [Float], entryIndices: [Int], vocabulary: Int,
                        dtype: TensorDType) throws(WireError) -> StepOutcome {
        guard !entryIndices.isEmpty else {
            return StepOutcome(pipelineLabel: pipelineLabel, planEpoch: planEpoch, stepID: stepID, tokens: [])
        }
        let tensor = try ActivationTensor(values: values, shape: [entryIndices.count, vocabulary], dtype: dtype)
        let logitsRows = entryIndices.map { i in
            SequenceRow(sequenceID: rows[i].sequenceID, position: rows[i].position, sample: rows[i].sample)
        }
        return StepOutcome(pipelineLabel: pipelineLabel, planEpoch: planEpoch, stepID: stepID, tokens: [], logits: tensor,
                           logitsRows: logitsRows)
    }

    /// The result of a last stage that sampled on the stage: one token per row that wanted logits
    /// (`entryIndices[i]` is the row of `sampled[i]`), each at its row's position + 1.
    public func outcome(sampled: [SampledRow], entryIndices: [Int]) -> StepOutcome {
        precondition(sampled.count == entryIndices.count, "one sampled token per row")
        let tokens = zip(sampled, entryIndices).map { result, i in
            SampledToken(sequenceID: rows[i].sequenceID, position: UInt32(clamping: Int(rows[i].position) + 1),
                         tokenID: UInt32(bitPattern: result.token), logprob: result.logprobs?.logprob,
                         topLogprobs: result.logprobs?.top.map { (tokenID: UInt32(bitPattern: $0.id), logprob: $0.logprob) } ?? [])
        }
        return StepOutcome(pipelineLabel: pipelineLabel, planEpoch: planEpoch, stepID: stepID, tokens: tokens)
    }

    /// A failed step's result.
    public func failure(_ message: String) -> StepOutcome {
        StepOutcome(pipelineLabel: pipelineLabel, planEpoch: planEpoch, stepID: stepID, tokens: [], error: message)
    }
}

extension StageOutput {
    /// The full-model output for `batch` from the last stage's result: logits rows, or tokens the
    /// stage sampled (see ``init(sampled:batch:vocabulary:)``), matched to the batch's entries by
    /// sequence and position.
    public init(outcome: StepOutcome, batch: StageBatch, vocabulary: Int) throws(StepConversionError) {
        if !outcome.tokens.isEmpty {
            guard outcome.logits == nil else { throw .sampledMismatch("the result has both sampled tokens and logits") }
            try self.init(sampled: outcome.tokens, batch: batch, vocabulary: vocabulary)
            return
        }
        var index: [SequenceRowKey: Int] = [:]
        for (i, e) in batch.entries.enumerated() where e.wantsLogits {
            index[SequenceRowKey(sequence: e.sequence.rawValue, position: UInt32(clamping: e.position))] = i
        }
        guard let logits = outcome.logits else {
            guard index.isEmpty else { throw .logitsMismatch("\(index.count) rows want logits, the result has none") }
            self = .logits(values: [], entryIndices: [], vocabulary: vocabulary)
            return
        }
        guard logits.shape == [outcome.logitsRows.count, vocabulary] else {
            throw .logitsMismatch("shape \(logits.shape), expected [\(outcome.logitsRows.count), \(vocabulary)]")
        }
        var entryIndices: [Int] = []
        for row in outcome.logitsRows {
            guard let i = index.removeValue(forKey: SequenceRowKey(sequence: row.sequenceID, position: row.position)) else {
                throw .logitsMismatch("unexpected row for sequence \(row.sequenceID) at position \(row.position)")
            }
            entryIndices.append(i)
        }
        guard index.isEmpty else { throw .logitsMismatch("\(index.count) rows that want logits got none") }
        self = .logits(values: logits.floats(), entryIndices: entryIndices, vocabulary: vocabulary)
    }
}

/// (sequence, position) of a row.
struct SequenceRowKey: Hashable {
    var sequence: UInt64
    var position: UInt32
}
