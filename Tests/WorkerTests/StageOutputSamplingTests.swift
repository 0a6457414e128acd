import CaravanCore
import CaravanWire
import Worker
import XCTest

/// The last stage samples the rows that carry a sampling request.
final class StageOutputSamplingTests: XCTestCase {
    func testTheLastStageSamplesOnlyWhenEveryRowAsks() throws {
        let logits: [Float] = [0, 3, 1, 5, 4, 2]  // two rows of a 3-token vocabulary
        // Greedy, with a penalty window of 4 tokens and a mild penalty that an empty history leaves unused.
        let greedy = SamplingRequest(parameters: SamplingParameters(temperature: 0, repeatPenalty: 1.2, repeatLastN: 4), history: [])
        let both = StageBatch(entries: [
            StageEntry(sequence: SequenceID(1), position: 4, token: 1, wantsLogits: true, sampling: greedy),
            StageEntry(sequence: SequenceID(2), position: 0, token: 1),
            StageEntry(sequence: SequenceID(2), position: 1, token: 1, wantsLogits: true, sampling: greedy),
        ])
        let output = StageOutput.logits(values: logits, entryIndices: [0, 2], vocabulary: 3)
        guard case let .sampled(rows, indices) = try output.sampledOnStage(batch: both) else { return XCTFail() }
        XCTAssertEqual(rows.map(\.token), [1, 0])
        XCTAssertEqual(indices, [0, 2])
        // Penalty window read on the stage: token 1 was just produced, so row 0 switches to 2.
        var penalized = greedy
        penalized.parameters.repeatPenalty = 10
        penalized.history = [1]
        var withHistory = both
        withHistory.entries[0].sampling = penalized
        guard case let .sampled(rows2, _) = try output.sampledOnStage(batch: withHistory) else { return XCTFail() }
        XCTAssertEqual(rows2.map(\.token), [2, 0])
        var mixed = both
        mixed.entries[2].sampling = nil
        guard case .logits = try output.sampledOnStage(batch: mixed) else {
            return XCTFail("a row without a request: logits for all")
        }
        var invalid = both
        invalid.entries[0].sampling?.parameters.topP = 5
        XCTAssertThrowsError(try output.sampledOnStage(batch: invalid)) {
            guard case .invalidSampling(0, _)? = $0 as? StepConversionError else { return XCTFail("\($0)") }
        }
    }
}
