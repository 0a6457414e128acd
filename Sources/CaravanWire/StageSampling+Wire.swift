import CaravanCore
import Sampling

// Sampling on the last stage, on the wire: the request that travels with a row (coordinator ->
// every stage) and the small result (last stage -> coordinator); the sampling itself is the
// worker's (`Worker/StageOutput+Sampling.swift`). Everything received is validated here; nothing a
// peer sends can crash a stage.

extension SamplingRequest {
    /// The wire message.
    public var wire: Caravan_V1_SamplingRequest {
        let p = parameters
        var w = Caravan_V1_SamplingRequest()
        w.temperature = p.temperature
        w.topK = Int64(p.topK)
        w.topP = p.topP
        w.minP = p.minP
        w.repeatPenalty = p.repeatPenalty
        w.repeatLastN = Int64(p.repeatLastN)
        w.frequencyPenalty = p.frequencyPenalty
        w.presencePenalty = p.presencePenalty
        w.seed = p.seed
        w.logprobs = p.logprobs
        w.topLogprobs = UInt32(clamping: p.topLogprobs)
        w.history = history.map { UInt32(bitPattern: $0) }
        return w
    }

    /// The request of batch row `row` from its wire message; throws when a value is out of range
    /// (the rules of `SamplingParameters.validate()`, token ids must fit `Int32`). Generation
    /// limits, which do not travel, take their defaults.
    public init(wire w: Caravan_V1_SamplingRequest, row: Int) throws(StepConversionError) {
        guard let topK = Int(exactly: w.topK), let repeatLastN = Int(exactly: w.repeatLastN) else {
            throw .invalidSampling(row: row, reason: "top_k or repeat_last_n does not fit this machine's integers")
        }
        var history: [Int32] = []
        history.reserveCapacity(w.history.count)
        for (i, id) in w.history.enumerated() {
            guard let token = Int32(exactly: id) else {
                throw .invalidSampling(row: row, reason: "history[\(i)] = \(id) is not a token id")
            }
            history.append(token)
        }
        var parameters = SamplingParameters(temperature: w.temperature, topK: topK, topP: w.topP, minP: w.minP,
                                            repeatPenalty: w.repeatPenalty, repeatLastN: repeatLastN,
                                            frequencyPenalty: w.frequencyPenalty, presencePenalty: w.presencePenalty,
                                            seed: w.seed)
        parameters.logprobs = w.logprobs
        parameters.topLogprobs = Int(w.topLogprobs)
        do {
            try parameters.validate()
        } catch {
            throw .invalidSampling(row: row, reason: error.description)
        }
        self.init(parameters: parameters, history: history)
    }
}

extension StageOutput {
    /// The output for `batch` from tokens its last stage sampled: one per row that wants logits,
    /// each at that row's position + 1, every such row with a sampling request; token ids inside
    /// the vocabulary, logprobs present exactly when asked for (at most `topLogprobs` alternatives).
    public init(sampled tokens: [SampledToken], batch: StageBatch, vocabulary: Int) throws(StepConversionError) {
        var index: [SequenceRowKey: (row: Int, request: SamplingRequest)] = [:]
        for (i, e) in batch.entries.enumerated() where e.wantsLogits {
            guard let request = e.sampling else {
                throw .sampledMismatch("row \(i) (sequence \(e.sequence.rawValue)) wants logits but has no sampling request")
            }
            index[SequenceRowKey(sequence: e.sequence.rawValue, position: UInt32(clamping: e.position))] = (i, request)
        }
        var rows: [SampledRow] = []
        var entryIndices: [Int] = []
        for t in tokens {
            guard t.position > 0,
                  let (i, request) = index.removeValue(forKey: SequenceRowKey(sequence: t.sequenceID, position: t.position - 1)) else {
                throw .sampledMismatch("unexpected token for sequence \(t.sequenceID) at position \(t.position)")
            }
            guard t.tokenID < UInt32(clamping: vocabulary) else {
                throw .sampledMismatch("token id \(t.tokenID) is outside the vocabulary (\(vocabulary))")
            }
            var logprobs: SampledLogprobs?
            if request.wantsLogprobs {
                guard let logprob = t.logprob else {
                    throw .sampledMismatch("sequence \(t.sequenceID): logprobs were asked for but are missing")
                }
                guard t.topLogprobs.count <= request.parameters.topLogprobs else {
                    throw .sampledMismatch("sequence \(t.sequenceID): \(t.topLogprobs.count) alternatives, at most \(request.parameters.topLogprobs) asked for")
                }
                var top: [SampledAlternative] = []
                for alt in t.topLogprobs {
                    guard alt.tokenID < UInt32(clamping: vocabulary) else {
                        throw .sampledMismatch("alternative token id \(alt.tokenID) is outside the vocabulary (\(vocabulary))")
                    }
                    top.append(SampledAlternative(id: Int32(alt.tokenID), logprob: alt.logprob))
                }
                logprobs = SampledLogprobs(logprob: logprob, top: top)
            } else if t.logprob != nil || !t.topLogprobs.isEmpty {
                throw .sampledMismatch("sequence \(t.sequenceID): logprobs that were not asked for")
            }
            rows.append(SampledRow(token: Int32(t.tokenID), logprobs: logprobs))
            entryIndices.append(i)
        }
        guard index.isEmpty else { throw .sampledMismatch("\(index.count) rows that want a token got none") }
        self = .sampled(rows: rows, entryIndices: entryIndices)
    }
}
