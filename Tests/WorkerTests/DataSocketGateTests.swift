import CaravanCore
import CaravanWire
import Logging
@testable import Worker
import XCTest
import ZeroMQ

final class DataSocketGateTests: XCTestCase {
    private func assignment(epoch: UInt64, keys: [String]) -> StageAssignment {
        var a = StageAssignment(planEpoch: epoch, modelName: "m.gguf", modelSHA256: String(repeating: "a", count: 64), modelSize: 1,
                                modelLayerCount: 30, layers: LayerRange(10, 20)!, stageIndex: 1, stageCount: 3,
                                nextHop: "tcp://127.0.0.1:2", resultAddress: "tcp://127.0.0.1:3", activationDType: .f16,
                                maxContextTokens: 256, maxBatchSequences: 4, maxBatchTokens: 512)
        a.dataClientKeys = keys
        return a
    }

    func testTheGateAdmitsTheCoordinatorThenWhatEachAssignmentNames() throws {
        let context = try Context()
        let coordinator = try CurveKeyPair.generate().publicKey
        let first = try CurveKeyPair.generate().publicKey
        let second = try CurveKeyPair.generate().publicKey
        let gate = try DataSocketGate(context: context, coordinatorPublicKey: coordinator, logger: Logger(label: "test"))
        XCTAssertEqual(gate.admitted, [coordinator], "before an assignment only the coordinator")
        gate.admit(assignment(epoch: 1, keys: [coordinator, first]))
        XCTAssertEqual(gate.admitted, [coordinator, first])
        gate.admit(assignment(epoch: 2, keys: [second]))
        XCTAssertEqual(gate.admitted, [coordinator, second], "a new assignment replaces the set; the coordinator stays")
        gate.admit(assignment(epoch: 3, keys: [coordinator, "not a key"]))
        XCTAssertEqual(gate.admitted, [coordinator, second], "a bad key leaves the previous set")
        gate.stop()
        context.terminate()
    }

    func testRefusalsOfOneAddressAndKeyAreLoggedAtMostOncePerInterval() {
        var log = RefusalLog()
        let t0 = ContinuousClock.now
        XCTAssertEqual(log.record(address: "10.0.0.9", key: "K", now: t0), 0)
        XCTAssertNil(log.record(address: "10.0.0.9", key: "K", now: t0 + .milliseconds(100)))
        XCTAssertNil(log.record(address: "10.0.0.9", key: "K", now: t0 + .seconds(9)))
        XCTAssertEqual(log.record(address: "10.0.0.9", key: "L", now: t0 + .seconds(9)), 0, "another key is logged")
        XCTAssertEqual(log.record(address: "10.0.0.8", key: "K", now: t0 + .seconds(9)), 0, "another address is logged")
        XCTAssertEqual(log.record(address: "10.0.0.9", key: "K", now: t0 + .seconds(10)), 2, "two went unlogged")
        XCTAssertNil(log.record(address: "10.0.0.9", key: "K", now: t0 + .seconds(11)))

        // Bounded: the oldest pair is forgotten (and logged again at once).
        var many = RefusalLog()
        for i in 0..<RefusalLog.capacity { _ = many.record(address: "a\(i)", key: "K", now: t0 + .milliseconds(i)) }
        XCTAssertNil(many.record(address: "a1", key: "K", now: t0 + .seconds(1)))
        XCTAssertEqual(many.record(address: "new", key: "K", now: t0 + .seconds(1)), 0)
        XCTAssertEqual(many.record(address: "a0", key: "K", now: t0 + .seconds(1)), 0, "the oldest was forgotten")
    }
}
