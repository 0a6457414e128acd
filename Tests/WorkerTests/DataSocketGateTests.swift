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
}
