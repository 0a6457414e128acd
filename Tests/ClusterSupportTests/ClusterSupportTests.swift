import CaravanCore
import CaravanWire
import ClusterSupport
import Foundation
import Llama
import ZeroMQ
import XCTest

final class ClusterSupportTests: XCTestCase {
    func testSHA256KnownAnswers() {
        XCTAssertEqual(SHA256.hex(of: []), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(of: Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Incremental updates in odd pieces equal one update.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var h = SHA256()
        var i = 0
        for size in [1, 63, 64, 65, 7, 300, 500] {
            h.update(Array(data[i..<min(data.count, i + size)]))
            i = min(data.count, i + size)
        }
        XCTAssertEqual(SHA256.hexString(h.finalize()), SHA256.hex(of: data))
    }

    func testFingerprintIsCachedNextToTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fp-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.gguf").path
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        let fp = try ModelFingerprint.of(path: path)
        XCTAssertEqual(fp, ModelFingerprint(name: "m.gguf", sha256: SHA256.hex(of: Array("abc".utf8)), size: 3))
        let cache = try String(contentsOfFile: path + ".sha256", encoding: .utf8)
        XCTAssertTrue(cache.hasPrefix(fp.sha256))
        // A stale cache (different size) is recomputed.
        try Data("abcd".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try ModelFingerprint.of(path: path).sha256, SHA256.hex(of: Array("abcd".utf8)))
        XCTAssertThrowsError(try ModelFingerprint.of(path: dir.appendingPathComponent("missing").path))
    }

    func testMeminfoParsing() {
        let text = "MemTotal:       24684156 kB\nMemFree:        20000000 kB\nMemAvailable:   23000000 kB\nBuffers: 1 kB\n"
        let m = HostInfo.parseMeminfo(text)
        XCTAssertEqual(m?.total, 24_684_156 * 1024)
        XCTAssertEqual(m?.available, 23_000_000 * 1024)
        XCTAssertEqual(HostInfo.parseMeminfo("MemTotal: 10 kB\nMemFree: 4 kB\n")?.available, 4096)
        XCTAssertNil(HostInfo.parseMeminfo("garbage"))
    }

    func testEndpoints() {
        XCTAssertEqual(Endpoints.advertisable("tcp://0.0.0.0:7001"), "tcp://127.0.0.1:7001")
        XCTAssertEqual(Endpoints.advertisable("tcp://10.1.2.3:7001"), "tcp://10.1.2.3:7001")
        XCTAssertEqual(Endpoints.anyPort(like: "tcp://10.1.2.3:7000"), "tcp://10.1.2.3:*")
    }

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

final class ClusterSecurityTests: XCTestCase {
    func testKeyFileIsCreatedOnceThenReused() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try ClusterSecurity.keyPair(file: path)
        let again = try ClusterSecurity.keyPair(file: path)
        XCTAssertEqual(first, again)
        XCTAssertEqual(first.publicKey.count, 40)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        XCTAssertEqual(mode?.intValue, 0o600)
        XCTAssertEqual(ClusterSecurity.curve(first).publicKey, first.publicKey)
        XCTAssertEqual(ClusterSecurity.plain.publicKey, "")
        try "not a key".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ClusterSecurity.keyPair(file: path))
    }
}
