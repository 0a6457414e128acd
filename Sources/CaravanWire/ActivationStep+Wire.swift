import ZeroMQ

extension SequenceRow {
    /// The wire entry.
    public var wire: Caravan_V1_SequenceEntry {
        var entry = Caravan_V1_SequenceEntry()
        entry.sequenceID = sequenceID
        entry.position = position
        if let tokenID { entry.tokenID = tokenID }
        entry.sample = sample
        if let sampling { entry.sampling = sampling }
        return entry
    }

    /// The domain row for a wire entry.
    public init(wire: Caravan_V1_SequenceEntry) {
        self.init(sequenceID: wire.sequenceID, position: wire.position,
                  tokenID: wire.hasTokenID ? wire.tokenID : nil, sample: wire.sample,
                  sampling: wire.hasSampling ? wire.sampling : nil)
    }
}

extension ActivationStep {
    /// The header for this step (validated like a received one). The tensor's bytes are not part of
    /// it: they travel as the next frame.
    public func wireHeader(limits: WireLimits) throws(WireError) -> Caravan_V1_ActivationHeader {
        try Self.validate(label: pipelineLabel, planEpoch: planEpoch, rows: rows, tensorShape: tensor?.shape, limits: limits)
        if let tensor, tensor.byteCount > limits.maxPayloadBytes {
            throw .payloadTooLarge(bytes: UInt64(tensor.byteCount), limit: limits.maxPayloadBytes)
        }
        var header = Caravan_V1_ActivationHeader()
        header.jobID = pipelineLabel
        header.planEpoch = planEpoch
        header.stepID = stepID
        header.sequences = rows.map(\.wire)
        if let tensor { header.tensor = tensor.wireHeader() }
        header.replayedLayerPositions = replayedLayerPositions
        return header
    }

    /// Validates a received header and its payload frame (if any) and builds the step.
    public init(wire header: Caravan_V1_ActivationHeader, payload: Message?, limits: WireLimits) throws(WireError) {
        var tensor: ActivationTensor?
        switch (header.hasTensor, payload) {
        case (true, nil): throw .missingPayload
        case (false, .some): throw .unexpectedPayload
        case (true, .some(let payload)): tensor = try ActivationTensor(wire: header.tensor, payload: payload, limits: limits)
        case (false, nil): tensor = nil
        }
        let rows = header.sequences.map(SequenceRow.init(wire:))
        try Self.validate(label: header.jobID, planEpoch: header.planEpoch, rows: rows,
                          tensorShape: tensor?.shape, limits: limits)
        self.init(pipelineLabel: header.jobID, planEpoch: header.planEpoch, stepID: header.stepID, rows: rows, tensor: tensor)
        replayedLayerPositions = header.replayedLayerPositions
    }

    /// The rules both directions share.
    static func validate(label: String, planEpoch: UInt64, rows: [SequenceRow], tensorShape: [Int]?,
                         limits: WireLimits) throws(WireError) {
        guard !label.isEmpty else { throw .missingField("activation.job_id") }
        guard planEpoch > 0 else { throw .missingField("activation.plan_epoch") }
        guard !rows.isEmpty else { throw .missingField("activation.sequences") }
        guard rows.count <= limits.maxRows else {
            throw .invalidField("activation.sequences", reason: "\(rows.count) rows exceed the limit of \(limits.maxRows)")
        }
        if let shape = tensorShape {
            guard shape.count >= 2 else {
                throw .invalidShape("activations need [rows, hidden], got \(shape)")
            }
            guard shape[0] == rows.count else {
                throw .invalidShape("tensor has \(shape[0]) rows but the step has \(rows.count) sequence entries")
            }
        } else if let index = rows.firstIndex(where: { $0.tokenID == nil }) {
            throw .missingField("activation.sequences[\(index)].token_id (a step without a tensor carries tokens)")
        }
    }
}

extension StepOutcome {
    /// The wire message.
    public func wire() throws(WireError) -> Caravan_V1_StepResult {
        try Self.validate(label: pipelineLabel, planEpoch: planEpoch, logitsShape: logits?.shape, logitsRows: logitsRows.count)
        var result = Caravan_V1_StepResult()
        result.jobID = pipelineLabel
        result.planEpoch = planEpoch
        result.stepID = stepID
        result.tokens = tokens.map { token in
            var t = Caravan_V1_SampledToken()
            t.sequenceID = token.sequenceID
            t.position = token.position
            t.tokenID = token.tokenID
            if let logprob = token.logprob { t.logprob = logprob }
            t.topLogprobs = token.topLogprobs.map { alt in
                var a = Caravan_V1_TokenLogprob()
                a.tokenID = alt.tokenID
                a.logprob = alt.logprob
                return a
            }
            return t
        }
        result.error = error ?? ""
        if let logits {
            result.logits = logits.wireHeader()
            result.logitsRows = logitsRows.map(\.wire)
        }
        result.replayedLayerPositions = replayedLayerPositions
        return result
    }

    /// Validates a received result and its logits payload frame (if any) and builds the outcome.
    public init(wire: Caravan_V1_StepResult, payload: Message? = nil, limits: WireLimits = WireLimits()) throws(WireError) {
        var logits: ActivationTensor?
        switch (wire.hasLogits, payload) {
        case (true, nil): throw .missingPayload
        case (false, .some): throw .unexpectedPayload
        case (true, .some(let payload)):
            logits = try ActivationTensor(wire: wire.logits, payload: payload, limits: limits)
        case (false, nil): logits = nil
        }
        try Self.validate(label: wire.jobID, planEpoch: wire.planEpoch, logitsShape: logits?.shape,
                          logitsRows: wire.logitsRows.count)
        let tokens = wire.tokens.map { t in
            SampledToken(sequenceID: t.sequenceID, position: t.position, tokenID: t.tokenID,
                         logprob: t.hasLogprob ? t.logprob : nil,
                         topLogprobs: t.topLogprobs.map { (tokenID: $0.tokenID, logprob: $0.logprob) })
        }
        self.init(pipelineLabel: wire.jobID, planEpoch: wire.planEpoch, stepID: wire.stepID, tokens: tokens,
                  error: wire.error.isEmpty ? nil : wire.error,
                  logits: logits, logitsRows: wire.logitsRows.map(SequenceRow.init(wire:)))
        replayedLayerPositions = wire.replayedLayerPositions
    }

    static func validate(label: String, planEpoch: UInt64, logitsShape: [Int]?, logitsRows: Int) throws(WireError) {
        guard !label.isEmpty else { throw .missingField("step_result.job_id") }
        guard planEpoch > 0 else { throw .missingField("step_result.plan_epoch") }
        guard let shape = logitsShape else {
            guard logitsRows == 0 else {
                throw .invalidField("step_result.logits_rows", reason: "\(logitsRows) logits rows but no logits tensor")
            }
            return
        }
        guard shape.count == 2 else { throw .invalidShape("logits need [rows, vocabulary], got \(shape)") }
        guard shape[0] == logitsRows else {
            throw .invalidShape("logits have \(shape[0]) rows but the result names \(logitsRows) logits rows")
        }
    }
}
