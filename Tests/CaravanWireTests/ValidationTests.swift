import XCTest
import CaravanWire
import SwiftProtobuf
import ZeroMQ

final class ValidationTests: XCTestCase {
    let codec = WireCodec()

    /// A valid activation's frames after `mutate` changed its envelope and `payload` its payload.
    private func tampered(
        _ mutate: (inout Caravan_V1_Envelope) -> Void = { _ in },
        payload editPayload: (inout [UInt8]) -> Void = { _ in }
    ) throws -> [ZeroMQ.Message] {
        let frames = try codec.encode(try Samples.step())
        var envelope = try Caravan_V1_Envelope(serializedBytes: frames[0].bytes)
        mutate(&envelope)
        var payload = frames[1].bytes
        editPayload(&payload)
        return [ZeroMQ.Message(try envelope.serializedBytes() as [UInt8]), ZeroMQ.Message(payload)]
    }

    private func assertRejected(_ frames: [ZeroMQ.Message], codec: WireCodec? = nil, _ expected: WireError,
                                file: StaticString = #filePath, line: UInt = #line) {
        do {
            let inbound = try (codec ?? self.codec).decode(frames)
            XCTFail("accepted \(inbound), expected \(expected)", file: file, line: line)
        } catch {
            XCTAssertEqual(error, expected, file: file, line: line)
            XCTAssertFalse(error.description.isEmpty)
        }
    }

    private func withTensor(_ edit: @escaping (inout Caravan_V1_TensorHeader) -> Void) -> (inout Caravan_V1_Envelope) -> Void {
        { envelope in
            guard case .activation(var header) = envelope.body else { return }
            edit(&header.tensor)
            envelope.body = .activation(header)
        }
    }

    func testUntamperedFramesAreAccepted() throws {
        XCTAssertNoThrow(try codec.decode(try tampered()))
    }

    func testWrongShapeIsRejected() throws {
        // 3 rows of 4 but only 2 sequence entries (length and checksum made consistent).
        let threeRows = try tampered(withTensor { $0.shape = [3, 4]; $0.byteLength = 24 },
                                     payload: { $0 += [UInt8](repeating: 0, count: 8) })
        var envelope = try Caravan_V1_Envelope(serializedBytes: threeRows[0].bytes)
        if case .activation(var h) = envelope.body {
            h.tensor.crc32C = CRC32C.checksum(threeRows[1].bytes)
            envelope.body = .activation(h)
        }
        let frames = [ZeroMQ.Message(try envelope.serializedBytes() as [UInt8]), threeRows[1]]
        assertRejected(frames, .invalidShape("tensor has 3 rows but the step has 2 sequence entries"))

        assertRejected(try tampered(withTensor { $0.shape = [] }), .invalidShape("shape is empty"))
        assertRejected(try tampered(withTensor { $0.shape = [2, 0, 4] }), .invalidShape("dimension 1 is 0, must be positive"))
        assertRejected(try tampered(withTensor { $0.shape = [2, 2, 2, 1, 1] }),
                       .invalidShape("5 dimensions exceed the limit of 4"))
        assertRejected(try tampered(withTensor { $0.shape = [UInt64.max / 2, 4] }),
                       .invalidShape("[\(UInt64.max / 2), 4] has too many elements"))
    }

    func testLengthMismatchesAreRejected() throws {
        assertRejected(try tampered(withTensor { $0.byteLength = 15 }), .lengthMismatch(declared: 15, expected: 16))
        assertRejected(try tampered(payload: { $0.removeLast(2) }), .payloadSizeMismatch(declared: 16, actual: 14))
        assertRejected(try tampered(payload: { $0.append(0) }), .payloadSizeMismatch(declared: 16, actual: 17))
    }

    func testBadChecksumIsRejected() throws {
        let good = try codec.encode(try Samples.step())
        let declared = CRC32C.checksum(good[1].bytes)
        var flipped = good[1].bytes
        flipped[3] ^= 0x10
        assertRejected(try tampered(payload: { $0[3] ^= 0x10 }),
                       .checksumMismatch(declared: declared, actual: CRC32C.checksum(flipped)))
    }

    func testUnknownDTypeIsRejected() throws {
        assertRejected(try tampered(withTensor { $0.dtype = .UNRECOGNIZED(9) }), .unknownDType(9))
        assertRejected(try tampered(withTensor { $0.dtype = .unspecified }), .unknownDType(0))
    }

    func testMissingFieldsAndUnknownVersionAreRejected() throws {
        assertRejected(try tampered { e in
            if case .activation(var h) = e.body { h.jobID = ""; e.body = .activation(h) }
        }, .missingField("activation.job_id"))
        assertRejected(try tampered { e in
            if case .activation(var h) = e.body { h.planEpoch = 0; e.body = .activation(h) }
        }, .missingField("activation.plan_epoch"))
        assertRejected(try tampered { e in
            if case .activation(var h) = e.body { h.sequences = []; e.body = .activation(h) }
        }, .missingField("activation.sequences"))
        assertRejected(try tampered { $0.protocolVersion = 0 }, .missingField("envelope.protocol_version"))
        assertRejected(try tampered { $0.protocolVersion = 2 }, .unsupportedVersion(2))
        assertRejected([ZeroMQ.Message(try Caravan_V1_Envelope.with { $0.protocolVersion = 1 }.serializedBytes() as [UInt8])],
                       .missingField("envelope.body"))

        // A tensor-less step must carry a token in every row.
        let tokens = ActivationStep(pipelineLabel: "j", planEpoch: 1, stepID: 0, rows: [
            SequenceRow(sequenceID: 1, position: 0, tokenID: 5), SequenceRow(sequenceID: 1, position: 1),
        ], tensor: nil)
        XCTAssertThrowsError(try codec.encode(tokens)) { error in
            XCTAssertEqual(error as? WireError,
                           .missingField("activation.sequences[1].token_id (a step without a tensor carries tokens)"))
        }

        // Control messages: a stage assignment without a model, or with an empty layer range.
        var assignment = Samples.stageAssignment
        assignment.clearModel()
        let noModel = Caravan_V1_Envelope.with { $0.protocolVersion = 1; $0.stageAssignment = assignment }
        assertRejected([ZeroMQ.Message(try noModel.serializedBytes() as [UInt8])], .missingField("stage_assignment.model"))
        assignment = Samples.stageAssignment
        assignment.layerEnd = assignment.layerStart
        XCTAssertThrowsError(try codec.encode(.stageAssignment(assignment))) { error in
            XCTAssertEqual(error as? WireError, .invalidField("stage_assignment.layer_end", reason: "layer range [0, 0) is empty"))
        }
        assignment = Samples.stageAssignment
        assignment.producesLogits = true  // stage 0 of 2 is not the last stage
        XCTAssertThrowsError(try codec.encode(.stageAssignment(assignment))) { error in
            XCTAssertEqual(error as? WireError, .invalidField("stage_assignment.produces_logits",
                                                              reason: "must be set exactly for the last stage"))
        }
        var hello = Caravan_V1_Hello()
        hello.protocolVersion = 7
        hello.role = .worker
        hello.nodeID = "w"
        XCTAssertThrowsError(try codec.encode(.hello(hello))) { XCTAssertEqual($0 as? WireError, .unsupportedVersion(7)) }
    }

    func testDataClientKeysMustBeCurveKeys() throws {
        let keys = try (0..<2).map { _ in try CurveKeyPair.generate().publicKey }
        var assignment = Samples.stageAssignment
        assignment.dataClientKeys = keys
        guard case .message(.stageAssignment(let decoded), _) = try codec.decode(try codec.encode(.stageAssignment(assignment))) else {
            return XCTFail("not a stage assignment")
        }
        XCTAssertEqual(decoded.dataClientKeys, keys)

        let rejected: [(String, String)] = [
            ("short", "data_client_keys[1]"),
            (String(repeating: "~", count: 40), "data_client_keys[1]"),  // 40 characters, not Z85
            ("", "data_client_keys[1]"),
        ]
        for (bad, field) in rejected {
            assignment.dataClientKeys = [keys[0], bad]
            XCTAssertThrowsError(try codec.encode(.stageAssignment(assignment)), "'\(bad)'") { error in
                guard case .invalidField(let name, _) = error as? WireError else { return XCTFail("\(error)") }
                XCTAssertEqual(name, "stage_assignment." + field)
            }
        }
        assignment.dataClientKeys = Array(repeating: keys[0], count: 65)
        XCTAssertThrowsError(try codec.encode(.stageAssignment(assignment))) { error in
            XCTAssertEqual(error as? WireError, .invalidField("stage_assignment.data_client_keys", reason: "65 keys (at most 64)"))
        }
        // A worker's data key is what the coordinator lists for the next stage: checked on Register.
        var register = Caravan_V1_Register()
        register.workerID = "w"
        register.dataAddress = "tcp://10.0.0.5:7001"
        register.capabilities = Caravan_V1_WorkerCapabilities.with { $0.cores = 2 }
        register.dataPublicKey = keys[1]
        XCTAssertNoThrow(try codec.encode(.register(register)))
        register.dataPublicKey = "not a key"
        XCTAssertThrowsError(try codec.encode(.register(register))) { error in
            guard case .invalidField("register.data_public_key", _) = error as? WireError else { return XCTFail("\(error)") }
        }
    }

    func testGarbageAndTruncatedFramesAreRejected() throws {
        do {
            _ = try codec.decode([ZeroMQ.Message([0xFF, 0xFF, 0xFF, 0xFF])])
            XCTFail("garbage accepted")
        } catch {
            guard case .malformed = error else { return XCTFail("\(error)") }
        }
        let good = try codec.encode(try Samples.step())
        let header = good[0].bytes
        do {
            _ = try codec.decode([ZeroMQ.Message(Array(header.prefix(header.count - 5))), good[1]])
            XCTFail("truncated header accepted")
        } catch {
            guard case .malformed = error else { return XCTFail("\(error)") }
        }
        assertRejected([good[0]], .missingPayload)
        assertRejected([], .frameCount(0))
        assertRejected([good[0], good[1], good[1]], .frameCount(3))
        let heartbeat = try codec.encode(Samples.bodies[3])
        assertRejected([heartbeat[0], ZeroMQ.Message([1, 2])], .unexpectedPayload)
    }

    func testLimitsAreEnforced() throws {
        let frames = try codec.encode(try Samples.step())
        assertRejected(frames, codec: WireCodec(limits: WireLimits(maxPayloadBytes: 8)),
                       .payloadTooLarge(bytes: 16, limit: 8))
        assertRejected(frames, codec: WireCodec(limits: WireLimits(maxHeaderBytes: 4)),
                       .headerTooLarge(bytes: frames[0].count, limit: 4))
        assertRejected(frames, codec: WireCodec(limits: WireLimits(maxRows: 1)),
                       .invalidField("activation.sequences", reason: "2 rows exceed the limit of 1"))
        XCTAssertThrowsError(try WireCodec(limits: WireLimits(maxPayloadBytes: 8)).encode(try Samples.step()))
    }

    func testDomainTensorRejectsInconsistentStorage() {
        XCTAssertThrowsError(try ActivationTensor(dtype: .f32, shape: [2, 3], storage: .buffer(FrameBuffer(count: 20)))) {
            XCTAssertEqual($0 as? WireError, .lengthMismatch(declared: 20, expected: 24))
        }
        XCTAssertThrowsError(try ActivationTensor(zeros: .f16, shape: [4, -1])) {
            XCTAssertEqual($0 as? WireError, .invalidShape("dimension 1 is -1, must be positive"))
        }
        XCTAssertThrowsError(try ActivationTensor(values: [1, 2, 3], shape: [2, 2]))
    }
}

/// The fields a re-plan's replay adds (issue 13): counters on steps and results, and the
/// continuing sequences of an assignment, checked like every other field.
final class ReplayFieldTests: XCTestCase {
    let codec = WireCodec()

    func testReplayedLayerPositionsTravelWithStepsAndResults() throws {
        var step = try Samples.step()
        step.replayedLayerPositions = 96
        guard case .activation(let decoded, _) = try codec.decode(try codec.encode(step)) else { return XCTFail() }
        XCTAssertEqual(decoded.replayedLayerPositions, 96)
        var outcome = StepOutcome(pipelineLabel: "epoch-2", planEpoch: 2, stepID: 7, tokens: [])
        outcome.replayedLayerPositions = 20
        guard case .stepResult(let result, _) = try codec.decode(try codec.encode(outcome)) else { return XCTFail() }
        XCTAssertEqual(result, outcome)
        XCTAssertEqual(result.replayedLayerPositions, 20)
    }

    func testContinuingSequencesAreBoundedAndWithinTheContext() throws {
        var m = Samples.stageAssignment
        var c = Caravan_V1_ContinuingSequence()
        c.sequenceID = 4
        c.committedPositions = m.maxContextTokens
        m.continuing = [c]
        guard case .message(.stageAssignment(let back), _) = try codec.decode(try codec.encode(.stageAssignment(m))) else {
            return XCTFail()
        }
        XCTAssertEqual(back.continuing, [c])
        var beyond = m
        beyond.continuing[0].committedPositions = m.maxContextTokens + 1
        XCTAssertThrowsError(try codec.decode(try codec.encode(.stageAssignment(beyond))))
        var many = m
        many.continuing = Array(repeating: c, count: 8193)
        XCTAssertThrowsError(try codec.decode(try codec.encode(.stageAssignment(many))))
    }
}

/// Standby assignments (issue 13): ranges ascending, disjoint and within the model.
final class StandbyAssignmentWireTests: XCTestCase {
    private let codec = WireCodec()

    private func span(_ start: UInt32, _ end: UInt32) -> Caravan_V1_LayerSpan {
        var s = Caravan_V1_LayerSpan()
        s.layerStart = start
        s.layerEnd = end
        return s
    }

    private func standby(_ ranges: [(UInt32, UInt32)]) -> Caravan_V1_StandbyAssignment {
        var m = Caravan_V1_StandbyAssignment()
        m.planEpoch = 5
        m.model = Samples.model
        m.ranges = ranges.map { span($0.0, $0.1) }
        return m
    }

    private func decodes(_ m: Caravan_V1_StandbyAssignment) -> Bool {
        (try? codec.decode(try codec.encode(.standbyAssignment(m)))) != nil
    }

    func testWellFormedRangesPassAndBadOnesAreRefused() throws {
        XCTAssertTrue(decodes(standby([(0, 4), (20, 30)])))
        XCTAssertTrue(decodes(standby([])), "no ranges: keep none")
        XCTAssertFalse(decodes(standby([(4, 4)])), "empty range")
        XCTAssertFalse(decodes(standby([(20, 30), (0, 4)])), "not ascending")
        XCTAssertFalse(decodes(standby([(0, 10), (5, 12)])), "overlapping")
        XCTAssertFalse(decodes(standby([(20, 31)])), "beyond the model's 30 layers")
        var noEpoch = standby([(0, 4)])
        noEpoch.planEpoch = 0
        XCTAssertFalse(decodes(noEpoch))
        var noModel = standby([(0, 4)])
        noModel.clearModel()
        XCTAssertFalse(decodes(noModel))
        XCTAssertFalse(decodes(Caravan_V1_StandbyAssignment.with { $0.planEpoch = 5; $0.model = Samples.model
            $0.ranges = Array(repeating: span(0, 1), count: 4097) }))
    }
}
