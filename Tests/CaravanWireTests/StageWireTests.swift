import CaravanCore
import CaravanWire
import XCTest
import ZeroMQ

/// A stage's batches and outputs as steps and step results, and stage assignments, on the wire.
final class StageWireTests: XCTestCase {
    func testStepConversions() throws {
        let batch = StageBatch(entries: [
            StageEntry(sequence: SequenceID(1), position: 0, token: 5),
            StageEntry(sequence: SequenceID(1), position: 1, token: 6, wantsLogits: true),
            StageEntry(sequence: SequenceID(2), position: 3, token: 7, wantsLogits: true),
        ])
        let step = ActivationStep(tokens: batch, pipelineLabel: "j", planEpoch: 1, stepID: 9)
        XCTAssertNil(step.tensor)
        let back = try StageBatch(step: step, embedsTokens: true, hiddenWidth: 4)
        XCTAssertEqual(back.entries, batch.entries)
        XCTAssertThrowsError(try StageBatch(step: step, embedsTokens: false, hiddenWidth: 4), "a later stage needs activations")

        let hidden = try step.forwarding(hidden: (0..<12).map(Float.init), rows: 3, width: 4, dtype: .f32)
        XCTAssertTrue(hidden.rows.allSatisfy { $0.tokenID == nil })
        let second = try StageBatch(step: hidden, embedsTokens: false, hiddenWidth: 4)
        XCTAssertEqual(second.hidden, (0..<12).map(Float.init))
        XCTAssertThrowsError(try StageBatch(step: hidden, embedsTokens: false, hiddenWidth: 5)) {
            XCTAssertEqual($0 as? StepConversionError, .widthMismatch(expected: 5, actual: 4))
        }

        // Logits of rows 1 and 2 come back and map onto the batch's entries.
        let outcome = try step.outcome(logits: [1, 2, 3, 4, 5, 6], entryIndices: [1, 2], vocabulary: 3, dtype: .f32)
        guard case let .logits(values, indices, vocabulary) = try StageOutput(outcome: outcome, batch: batch, vocabulary: 3) else {
            return XCTFail("expected logits")
        }
        XCTAssertEqual(values, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(indices, [1, 2])
        XCTAssertEqual(vocabulary, 3)
        // A result missing a row that wants logits is rejected.
        let partial = try step.outcome(logits: [1, 2, 3], entryIndices: [1], vocabulary: 3, dtype: .f32)
        XCTAssertThrowsError(try StageOutput(outcome: partial, batch: batch, vocabulary: 3))
        XCTAssertThrowsError(try StageOutput(outcome: outcome, batch: batch, vocabulary: 4), "wrong vocabulary")
    }

    func testStageAssignmentWireRoundTripAndContradictions() throws {
        var a = StageAssignment(planEpoch: 2, modelName: "m", modelSHA256: String(repeating: "b", count: 64), modelSize: 10,
                                modelLayerCount: 30, layers: LayerRange(20, 30)!, stageIndex: 2, stageCount: 3,
                                nextHop: "tcp://x:1", resultAddress: "tcp://x:1", activationDType: .f32,
                                maxContextTokens: 256, maxBatchSequences: 4, maxBatchTokens: 512)
        a.dataClientKeys = try [CurveKeyPair.generate().publicKey, CurveKeyPair.generate().publicKey]
        XCTAssertEqual(try StageAssignment(wire: a.wire).dataClientKeys, a.dataClientKeys)
        XCTAssertTrue(a.producesLogits)
        XCTAssertFalse(a.embedsTokens)
        XCTAssertEqual(try StageAssignment(wire: a.wire), a)
        a.continuing = [SequenceID(3): 40, SequenceID(9): 7]
        XCTAssertEqual(try StageAssignment(wire: a.wire), a, "continuing sequences survive the wire")
        var twice = a.wire
        twice.continuing.append(twice.continuing[0])
        twice.continuing[2].committedPositions = 12
        XCTAssertEqual(try StageAssignment(wire: twice).continuing[SequenceID(3)], 12, "a sequence named twice keeps the smaller count")
        var bad = a.wire
        bad.embedsTokens = true
        XCTAssertThrowsError(try StageAssignment(wire: bad))
        bad = a.wire
        bad.layerEnd = 31
        XCTAssertThrowsError(try StageAssignment(wire: bad))
    }
}
