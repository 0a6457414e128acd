import CaravanCore
import XCTest
import CaravanWire
import ZeroMQ

final class RoundTripTests: XCTestCase {
    let codec = WireCodec()

    func testEveryMessageKindRoundTrips() throws {
        var kinds: Set<String> = []
        for (index, body) in (Samples.bodies + Samples.modelBodies).enumerated() {
            let frames = try codec.encode(body, requestID: UInt64(100 + index))
            XCTAssertEqual(frames.count, 1)
            guard case .message(let decoded, let requestID) = try codec.decode(frames) else {
                return XCTFail("\(Samples.kind(body)) did not decode as a message")
            }
            XCTAssertEqual(decoded, body, Samples.kind(body))
            XCTAssertEqual(requestID, UInt64(100 + index))
            kinds.insert(Samples.kind(body))
        }
        kinds.insert(Samples.kind(.activation(Caravan_V1_ActivationHeader())))  // covered below
        kinds.insert(Samples.kind(.stepResult(Caravan_V1_StepResult())))        // covered below
        kinds.insert(Samples.kind(.kvRows(Caravan_V1_KVRows())))                // covered below
        kinds.insert(Samples.kind(.modelChunk(Caravan_V1_ModelChunk())))        // WorkerTests.LayerPullTests
        XCTAssertEqual(kinds.count, Samples.allKindCount + Samples.modelKindCount, "some message kind has no round-trip sample")
    }

    func testKVRowsRoundTripAndAreCheckedOnReceipt() throws {
        let halfs: [UInt16] = (0..<(2 * 2 * 3 * 4)).map { UInt16($0 * 257) }
        let payload = halfs.withUnsafeBytes { Message(Array($0)) }
        let rows = KVRowsData(planEpoch: 4, sequence: SequenceID(9), position: 5, count: 3, layers: LayerRange(2, 4)!,
                              kvDimension: 4, payload: payload)
        let frames = try codec.encode(rows, requestID: 3)
        XCTAssertEqual(frames.count, 2)
        guard case .kvRows(let decoded, 3) = try codec.decode(frames) else { return XCTFail("not KV rows") }
        XCTAssertEqual(decoded.planEpoch, 4)
        XCTAssertEqual(decoded.sequence, SequenceID(9))
        XCTAssertEqual(decoded.position, 5)
        XCTAssertEqual(decoded.count, 3)
        XCTAssertEqual(decoded.layers, LayerRange(2, 4))
        XCTAssertEqual(decoded.payload.bytes, payload.bytes)
        // A payload of another size, a flipped bit, no payload: refused.
        XCTAssertThrowsError(try codec.decode([frames[0], Message(Array(payload.bytes.dropLast(2)))]))
        var flipped = payload.bytes
        flipped[7] ^= 1
        XCTAssertThrowsError(try codec.decode([frames[0], Message(flipped)])) { error in
            guard case WireError.checksumMismatch = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try codec.decode([frames[0]]))
        // Rows that do not fit the payload limit are refused before the payload is looked at.
        var big = rows.wireHeader
        big.count = UInt32.max
        var envelope = Caravan_V1_Envelope()
        envelope.protocolVersion = WireProtocol.version
        envelope.body = .kvRows(big)
        XCTAssertThrowsError(try codec.decode([Message(try envelope.serializedBytes()), payload]))
    }

    func testActivationRoundTripsInBothDTypes() throws {
        for dtype in TensorDType.allCases {
            let step = try Samples.step(dtype: dtype)
            let frames = try codec.encode(step, requestID: 9)
            XCTAssertEqual(frames.count, 2)
            XCTAssertEqual(frames[1].count, 8 * dtype.byteSize)
            guard case .activation(let decoded, let requestID) = try codec.decode(frames) else {
                return XCTFail("not an activation")
            }
            XCTAssertEqual(requestID, 9)
            XCTAssertEqual(decoded.pipelineLabel, "job-7")
            XCTAssertEqual(decoded.planEpoch, 3)
            XCTAssertEqual(decoded.stepID, 11)
            XCTAssertEqual(decoded.rows, step.rows)
            XCTAssertEqual(decoded.tensor?.dtype, dtype)
            XCTAssertEqual(decoded.tensor?.shape, [2, 4])
            XCTAssertEqual(decoded.tensor?.floats(), step.tensor?.floats())
            if dtype == .f32 { XCTAssertEqual(decoded.tensor?.floats().last, 42) }
        }
    }

    func testReceivedTensorIsForwardedWithoutCopy() throws {
        let frames = try codec.encode(try Samples.step())
        guard case .activation(var step, _) = try codec.decode(frames) else { return XCTFail() }
        step.stepID += 1
        let forwarded = try codec.encode(step)
        XCTAssertTrue(forwarded[1] === frames[1], "the received payload frame should be sent on as is")
    }

    func testTokenOnlyStepHasNoPayloadFrame() throws {
        let step = ActivationStep(pipelineLabel: "job-8", planEpoch: 1, stepID: 0, rows: [
            SequenceRow(sequenceID: 4, position: 0, tokenID: 1),
            SequenceRow(sequenceID: 4, position: 1, tokenID: 9690, sample: true),
        ], tensor: nil)
        let frames = try codec.encode(step)
        XCTAssertEqual(frames.count, 1)
        guard case .activation(let decoded, _) = try codec.decode(frames) else { return XCTFail() }
        XCTAssertNil(decoded.tensor)
        XCTAssertEqual(decoded.rows, step.rows)
    }

    func testStepResultRoundTrips() throws {
        let outcome = StepOutcome(pipelineLabel: "job-7", planEpoch: 3, stepID: 11, tokens: [
            SampledToken(sequenceID: 2, position: 10, tokenID: 28, logprob: -0.5,
                         topLogprobs: [(tokenID: 28, logprob: -0.5), (tokenID: 30, logprob: -1.5)]),
            SampledToken(sequenceID: 3, position: 4, tokenID: 0),
        ])
        let frames = try codec.encode(outcome, requestID: 5)
        guard case .stepResult(let decoded, 5) = try codec.decode(frames) else { return XCTFail() }
        XCTAssertEqual(decoded, outcome)
        XCTAssertNil(decoded.tokens[1].logprob)
        XCTAssertNil(decoded.error)
    }

    func testStepResultWithLogitsRoundTripsAsTwoFrames() throws {
        let logits = try ActivationTensor(values: [0.25, -3, 7.5, 1, 2, 3], shape: [2, 3], dtype: .f32)
        let rows = [SequenceRow(sequenceID: 2, position: 10, sample: true), SequenceRow(sequenceID: 3, position: 4, sample: true)]
        let outcome = StepOutcome(pipelineLabel: "job-7", planEpoch: 3, stepID: 12, tokens: [], logits: logits, logitsRows: rows)
        let frames = try codec.encode(outcome)
        XCTAssertEqual(frames.count, 2)
        guard case .stepResult(let decoded, _) = try codec.decode(frames) else { return XCTFail() }
        XCTAssertEqual(decoded, outcome)
        XCTAssertEqual(decoded.logits?.floats(), [0.25, -3, 7.5, 1, 2, 3])
        XCTAssertEqual(decoded.logitsRows, rows)
        // Payload missing, truncated, or one logits row too many: rejected.
        XCTAssertThrowsError(try codec.decode([frames[0]])) { XCTAssertEqual($0 as? WireError, .missingPayload) }
        XCTAssertThrowsError(try codec.decode([frames[0], Message(Array(frames[1].bytes.dropLast(4)))]))
        var wrongRows = outcome
        wrongRows.logitsRows.append(SequenceRow(sequenceID: 9, position: 0))
        XCTAssertThrowsError(try codec.encode(wrongRows))
        var rowsWithoutLogits = StepOutcome(pipelineLabel: "job-7", planEpoch: 3, stepID: 12, tokens: [])
        rowsWithoutLogits.logitsRows = rows
        XCTAssertThrowsError(try codec.encode(rowsWithoutLogits))
    }

    func testActivationCrossesARealSocket() throws {
        let context = try Context()
        let router = try Socket(context: context, type: .router)
        try router.set(.receiveTimeout, 2000)
        try router.set(.maxMessageSize, 1 << 20)
        try router.bind("tcp://127.0.0.1:*")
        let dealer = try Socket(context: context, type: .dealer)
        try dealer.connect(try router.lastEndpoint)

        let rows = 64, hidden = 576
        let tensor = try ActivationTensor(zeros: .f16, shape: [rows, hidden])
        tensor.withUnsafeMutableBytes { raw in
            for i in 0..<(rows * hidden) {
                raw.storeBytes(of: Float16(Float(i % 97) / 8).bitPattern, toByteOffset: i * 2, as: UInt16.self)
            }
        }
        let step = ActivationStep(pipelineLabel: "job-net", planEpoch: 2, stepID: 1,
                                  rows: (0..<rows).map { SequenceRow(sequenceID: 1, position: UInt32($0)) },
                                  tensor: tensor)
        try dealer.send(try codec.encode(step))
        let received = try router.receive()
        XCTAssertEqual(received.count, 3, "routing id + header + payload")
        let (routingID, inbound) = try codec.decodeRouted(received)
        XCTAssertEqual(routingID, received[0].bytes)
        guard case .activation(let decoded, _) = inbound else { return XCTFail("not an activation") }
        XCTAssertEqual(decoded.tensor?.shape, [rows, hidden])
        XCTAssertEqual(decoded.tensor?.floats(), tensor.floats())
    }
}
