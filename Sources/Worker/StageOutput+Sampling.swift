import CaravanCore
import CaravanWire
import Sampling

// The last stage samples the rows that carry a sampling request (the request travels with the row
// on the wire, `CaravanWire`'s `StageSampling+Wire.swift`), so only the token travels back.

extension StageOutput {
    /// On the last stage: when every row that wanted logits carries a ``SamplingRequest``, the
    /// tokens sampled from those logits (exactly as the coordinator's session would: same
    /// `Sampler.sampleRow`, draw for the row's position + 1); otherwise (some row has no request,
    /// or the output is not logits) the output unchanged.
    public func sampledOnStage(batch: StageBatch) throws(StepConversionError) -> StageOutput {
        guard case let .logits(values, entryIndices, vocabulary) = self, !entryIndices.isEmpty else { return self }
        var requests: [SamplingRequest] = []
        requests.reserveCapacity(entryIndices.count)
        for i in entryIndices {
            guard let request = batch.entries[i].sampling else { return self }
            requests.append(request)
        }
        precondition(values.count == entryIndices.count * vocabulary, "logits shape does not match the rows")
        var scratch = [Float](repeating: 0, count: vocabulary)
        var rows: [SampledRow] = []
        rows.reserveCapacity(requests.count)
        for (k, request) in requests.enumerated() {
            var sampler: Sampler
            do {
                sampler = try Sampler(request: request)
            } catch {
                throw .invalidSampling(row: entryIndices[k], reason: error.description)
            }
            let position = batch.entries[entryIndices[k]].position + 1
            let row = scratch.withUnsafeMutableBufferPointer { row in
                values.withUnsafeBufferPointer { all in
                    _ = row.update(fromContentsOf: all[(k * vocabulary)..<((k + 1) * vocabulary)])
                }
                return sampler.sampleRow(logits: row, history: request.history, position: position)
            }
            rows.append(row)
        }
        return .sampled(rows: rows, entryIndices: entryIndices)
    }
}
