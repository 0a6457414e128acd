import CaravanCore
import CaravanWire
import Worker
import XCTest

final class WorkerSessionTests: XCTestCase {
    private func assignment(epoch: UInt64, layers: (Int, Int) = (0, 10)) -> StageAssignment {
        StageAssignment(planEpoch: epoch, modelName: "m.gguf", modelSHA256: String(repeating: "a", count: 64), modelSize: 1,
                        modelLayerCount: 30, layers: LayerRange(layers.0, layers.1)!, stageIndex: 0, stageCount: 3,
                        nextHop: "tcp://127.0.0.1:2", resultAddress: "tcp://127.0.0.1:3", activationDType: .f16,
                        maxContextTokens: 256, maxBatchSequences: 4, maxBatchTokens: 512)
    }

    func testRegistrationThenAssignmentThenReady() {
        var s = WorkerSession()
        XCTAssertEqual(s.start(), [.sendHelloAndRegister])
        XCTAssertEqual(s.start(), [], "starting twice does nothing")
        XCTAssertEqual(s.state, .registering)
        XCTAssertEqual(s.assigned(assignment(epoch: 1)), [], "no assignment before the acknowledgement")
        XCTAssertEqual(s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 500),
                       [.startHeartbeats(intervalMilliseconds: 500)])
        XCTAssertEqual(s.state, .idle)
        XCTAssertNil(s.runningAssignment)
        let a = assignment(epoch: 1)
        XCTAssertEqual(s.assigned(a), [.load(a)])
        XCTAssertEqual(s.planEpoch, 1)
        XCTAssertNil(s.runningAssignment, "steps are not accepted while loading")
        XCTAssertEqual(s.loaded(epoch: 7, error: nil), [], "a result for another epoch is ignored")
        XCTAssertEqual(s.loaded(epoch: 1, error: nil), [.reportReady(epoch: 1, error: nil)])
        XCTAssertEqual(s.runningAssignment, a)
    }

    func testOlderAssignmentsAreIgnoredAndNewerReplace() {
        var s = WorkerSession()
        _ = s.start()
        _ = s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10)
        _ = s.assigned(assignment(epoch: 2))
        _ = s.loaded(epoch: 2, error: nil)
        XCTAssertEqual(s.assigned(assignment(epoch: 1)), [])
        XCTAssertEqual(s.assigned(assignment(epoch: 2, layers: (5, 9))), [.reportReady(epoch: 2, error: nil)],
                       "the same epoch again (its AssignmentReady was lost) is answered, not loaded")
        XCTAssertEqual(s.state, .ready(assignment(epoch: 2)))
        let newer = assignment(epoch: 3, layers: (10, 20))
        XCTAssertEqual(s.assigned(newer), [.load(newer)])
        XCTAssertEqual(s.state, .loading(newer))
    }

    func testALoadInterruptedByAReRegistrationGoesOnAndReportsItself() {
        var s = WorkerSession()
        _ = s.start()
        _ = s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10)
        let a = assignment(epoch: 4)
        _ = s.assigned(a)
        XCTAssertEqual(s.coordinatorSilent(), [.sendHelloAndRegister])
        XCTAssertEqual(s.forgottenAssignment, a)
        _ = s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10, planEpoch: 4)
        XCTAssertEqual(s.state, .loading(a), "still loading: not ready before the load ends")
        XCTAssertNil(s.runningAssignment)
        XCTAssertEqual(s.assigned(a), [], "the assignment sent again while loading changes nothing")
        XCTAssertEqual(s.loaded(epoch: 4, error: nil), [.reportReady(epoch: 4, error: nil)])
    }

    /// A load that ends while the worker registers again (its control loop heard nothing for a
    /// while) is reported after the acknowledgement. Before, the outcome was dropped: the session
    /// went back to `loading` for good, ignored the assignment the coordinator sent again, and the
    /// cluster never served (seen with 70B-wide stages, whose local loads take tens of seconds).
    func testALoadThatEndsWhileRegisteringAgainIsReportedAfterTheAcknowledgement() {
        for error in [nil, "out of memory"] as [String?] {
            var s = WorkerSession()
            _ = s.start()
            _ = s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10)
            let a = assignment(epoch: 5)
            _ = s.assigned(a)
            XCTAssertEqual(s.coordinatorSilent(), [.sendHelloAndRegister])
            XCTAssertEqual(s.loaded(epoch: 5, error: error), [], "nothing to report before the acknowledgement")
            XCTAssertEqual(s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10, planEpoch: 5),
                           [.startHeartbeats(intervalMilliseconds: 50), .reportReady(epoch: 5, error: error)])
            if let error {
                XCTAssertEqual(s.state, .failed(a, reason: error))
                XCTAssertNil(s.runningAssignment)
            } else {
                XCTAssertEqual(s.state, .ready(a))
                XCTAssertEqual(s.runningAssignment, a)
                XCTAssertEqual(s.assigned(a), [.reportReady(epoch: 5, error: nil)], "the assignment sent again is answered")
            }
        }
    }

    /// The kept outcome belongs to that registration only: a coordinator that restarted (another
    /// epoch) gets an idle worker, and a second silence starts afresh.
    func testALoadOutcomeKeptDuringRegistrationIsForgottenWhenThePlanChanged() {
        var s = WorkerSession()
        _ = s.start()
        _ = s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10)
        _ = s.assigned(assignment(epoch: 6))
        _ = s.coordinatorSilent()
        _ = s.loaded(epoch: 6, error: nil)
        XCTAssertEqual(s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10, planEpoch: 1),
                       [.startHeartbeats(intervalMilliseconds: 50)])
        XCTAssertEqual(s.state, .idle)
        let b = assignment(epoch: 1)
        XCTAssertEqual(s.assigned(b), [.load(b)])
        XCTAssertEqual(s.loaded(epoch: 1, error: nil), [.reportReady(epoch: 1, error: nil)])
    }

    func testSilentCoordinatorMeansRegisterAgainAndAcceptAnyEpoch() {
        var s = WorkerSession()
        XCTAssertEqual(s.coordinatorSilent(), [], "nothing to redo before starting")
        _ = s.start()
        _ = s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10)
        let old = assignment(epoch: 5)
        _ = s.assigned(old)
        _ = s.loaded(epoch: 5, error: nil)
        XCTAssertEqual(s.coordinatorSilent(), [.sendHelloAndRegister])
        XCTAssertEqual(s.state, .registering)
        XCTAssertEqual(s.forgottenAssignment, old)
        XCTAssertEqual(s.coordinatorSilent(), [.sendHelloAndRegister], "keeps retrying while unanswered")
        _ = s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10)
        XCTAssertNil(s.forgottenAssignment)
        let restarted = assignment(epoch: 1)
        XCTAssertEqual(s.assigned(restarted), [.load(restarted)], "a restarted coordinator counts epochs from 1")
    }

    func testFailedLoadAndRefusal() {
        var s = WorkerSession()
        _ = s.start()
        _ = s.registerAck(accepted: true, reason: "", heartbeatIntervalMilliseconds: 10)
        let a = assignment(epoch: 1)
        _ = s.assigned(a)
        XCTAssertEqual(s.loaded(epoch: 1, error: "no file"), [.reportReady(epoch: 1, error: "no file")])
        XCTAssertEqual(s.state, .failed(a, reason: "no file"))
        XCTAssertNil(s.runningAssignment)

        var r = WorkerSession()
        _ = r.start()
        let d = r.registerAck(accepted: false, reason: "wrong model", heartbeatIntervalMilliseconds: 0)
        XCTAssertEqual(r.state, .refused(reason: "wrong model"))
        guard case .stop(let why)? = d.first else { return XCTFail("expected stop") }
        XCTAssertTrue(why.contains("wrong model"))
    }
}
