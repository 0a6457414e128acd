import CaravanCore
import Coordinator
import Planning
import XCTest

final class MembershipTests: XCTestCase {
    private let sha = String(repeating: "c", count: 64)
    private let template = AssignmentTemplate(
        modelName: "m.gguf", modelSHA256: String(repeating: "c", count: 64), modelSize: 100, modelLayerCount: 12,
        resultAddress: "tcp://coord:9", activationDType: .f16, maxContextTokens: 256, maxBatchSequences: 4, maxBatchTokens: 512)

    private func peer(_ n: UInt8) -> PeerID { PeerID([0, n]) }

    private func join(_ m: inout Membership, _ n: UInt8, now: UInt64 = 0) -> [Membership.Directive] {
        m.register(peer: peer(n), workerID: "w\(n)", dataAddress: "tcp://w\(n):1", memoryBytes: 1 << 30, speed: 1,
                   heldModels: [sha], now: now)
    }

    func testPlansWhenEnoughWorkersJoinThenServesWhenAllReady() throws {
        var m = Membership(expectedWorkers: 2, modelSHA256: sha, heartbeatTimeout: 1000)
        XCTAssertEqual(join(&m, 1), [.acknowledge(peer(1), accepted: true, reason: "")])
        let second = join(&m, 2)
        XCTAssertEqual(second.first, .acknowledge(peer(2), accepted: true, reason: ""))
        guard case .plan(let workers)? = second.last else { return XCTFail("expected a plan directive") }
        XCTAssertEqual(workers.map(\.workerID), ["w1", "w2"])

        let plan = PipelinePlan(stages: [
            PlannedStage(workerID: "w1", layers: LayerRange(0, 6)!, memoryBytes: 1),
            PlannedStage(workerID: "w2", layers: LayerRange(6, 12)!, memoryBytes: 1),
        ])
        let assigns = m.planned(plan, template: template)
        XCTAssertEqual(assigns.count, 2)
        guard case let .assign(p1, a1) = assigns[0], case let .assign(p2, a2) = assigns[1] else { return XCTFail() }
        XCTAssertEqual(p1, peer(1))
        XCTAssertEqual(p2, peer(2))
        XCTAssertEqual(a1.nextHop, "tcp://w2:1", "stage 1 sends to stage 2's data socket")
        XCTAssertEqual(a2.nextHop, "tcp://coord:9", "the last stage sends to the coordinator")
        XCTAssertEqual(a1.planEpoch, 1)
        XCTAssertTrue(a1.embedsTokens && !a1.producesLogits)
        XCTAssertTrue(a2.producesLogits && !a2.embedsTokens)

        XCTAssertEqual(m.assignmentReady(peer: peer(1), epoch: 1, error: nil, now: 5), [])
        XCTAssertEqual(m.assignmentReady(peer: peer(2), epoch: 7, error: nil, now: 5), [], "wrong epoch is ignored")
        XCTAssertEqual(m.assignmentReady(peer: peer(2), epoch: 1, error: nil, now: 5),
                       [.serve(epoch: 1, stages: [a1, a2], peers: [peer(1), peer(2)])])
        XCTAssertEqual(m.phase, .serving(epoch: 1, stages: [a1, a2], peers: [peer(1), peer(2)]))
        // A late joiner is admitted and makes the cluster re-plan (covered below).
        XCTAssertEqual(join(&m, 3).first, .acknowledge(peer(3), accepted: true, reason: ""))
    }

    /// A worker without the model file joins: it pulls its layers from the coordinator.
    func testEachStageAdmitsTheCoordinatorAndThePreviousStageAndARePlanReplacesTheSet() throws {
        var m = Membership(expectedWorkers: 3, modelSHA256: sha, heartbeatTimeout: 1000)
        var keyed = template
        keyed.resultPublicKey = "coordinator-key"
        for n: UInt8 in 1...3 {
            _ = m.register(peer: peer(n), workerID: "w\(n)", dataAddress: "tcp://w\(n):1", dataPublicKey: "key-w\(n)",
                           memoryBytes: 1 << 30, speed: 1, heldModels: [sha], now: 0)
        }
        let assigns = m.planned(PipelinePlan(stages: [
            PlannedStage(workerID: "w1", layers: LayerRange(0, 4)!, memoryBytes: 1),
            PlannedStage(workerID: "w2", layers: LayerRange(4, 8)!, memoryBytes: 1),
            PlannedStage(workerID: "w3", layers: LayerRange(8, 12)!, memoryBytes: 1),
        ]), template: keyed)
        let sets = assigns.compactMap { d -> [String]? in
            guard case .assign(_, let a) = d else { return nil }
            return a.dataClientKeys
        }
        // Each stage admits the coordinator, the stage before it (its steps) and the stage after it
        // (the KV rows it mirrors to this worker).
        XCTAssertEqual(sets, [["coordinator-key", "key-w2"], ["coordinator-key", "key-w1", "key-w3"], ["coordinator-key", "key-w2"]])
        for n: UInt8 in 1...3 { _ = m.assignmentReady(peer: peer(n), epoch: 1, error: nil, now: 10) }

        // w2 is lost: w3 now follows w1 and admits w1's key instead of w2's.
        m.touch(peer(1), now: 1500)
        m.touch(peer(3), now: 1500)
        guard case .plan? = m.tick(now: 1600).last else { return XCTFail("expected a re-plan") }
        let again = m.planned(PipelinePlan(stages: [
            PlannedStage(workerID: "w1", layers: LayerRange(0, 6)!, memoryBytes: 1),
            PlannedStage(workerID: "w3", layers: LayerRange(6, 12)!, memoryBytes: 1),
        ]), template: keyed)
        guard again.count == 2, case .assign(let p3, let a3) = again[1] else { return XCTFail("\(again)") }
        XCTAssertEqual(p3, peer(3))
        XCTAssertEqual(a3.planEpoch, 2)
        XCTAssertEqual(a3.dataClientKeys, ["coordinator-key", "key-w1"])

        // Plain mode: no keys anywhere, no sets.
        var plain = Membership(expectedWorkers: 2, modelSHA256: sha, heartbeatTimeout: 1000)
        _ = join(&plain, 1)
        _ = join(&plain, 2)
        let open = plain.planned(PipelinePlan(stages: [
            PlannedStage(workerID: "w1", layers: LayerRange(0, 6)!, memoryBytes: 1),
            PlannedStage(workerID: "w2", layers: LayerRange(6, 12)!, memoryBytes: 1),
        ]), template: template)
        for d in open { if case .assign(_, let a) = d { XCTAssertEqual(a.dataClientKeys, []) } }
    }

    func testWorkerWithoutTheModelIsAccepted() {
        var m = Membership(expectedWorkers: 1, modelSHA256: sha, heartbeatTimeout: 1000)
        let d = m.register(peer: peer(1), workerID: "w1", dataAddress: "tcp://w1:1", memoryBytes: 1, speed: 1,
                           heldModels: [String(repeating: "d", count: 64)], now: 0)
        XCTAssertEqual(d.first, .acknowledge(peer(1), accepted: true, reason: ""))
        XCTAssertEqual(m.members.map(\.workerID), ["w1"])
    }

    func testLoadFailureAndLostWorkerFailTheCluster() {
        var m = Membership(expectedWorkers: 1, modelSHA256: sha, heartbeatTimeout: 1000)
        _ = join(&m, 1)
        _ = m.planned(PipelinePlan(stages: [PlannedStage(workerID: "w1", layers: LayerRange(0, 12)!, memoryBytes: 1)]),
                      template: template)
        let d = m.assignmentReady(peer: peer(1), epoch: 1, error: "no file", now: 10)
        guard case .replan(let why)? = d.first, case .fail(let reason)? = d.last else { return XCTFail("expected a re-plan that waits: \(d)") }
        XCTAssertTrue(why.contains("no file"))
        XCTAssertTrue(reason.contains("no workers left"), reason)
        guard case .waiting = m.phase else { return XCTFail("\(m.phase)") }

        var n = Membership(expectedWorkers: 1, modelSHA256: sha, heartbeatTimeout: 1000)
        _ = join(&n, 1, now: 0)
        _ = n.planned(PipelinePlan(stages: [PlannedStage(workerID: "w1", layers: LayerRange(0, 12)!, memoryBytes: 1)]),
                      template: template)
        _ = n.assignmentReady(peer: peer(1), epoch: 1, error: nil, now: 500)
        XCTAssertEqual(n.tick(now: 1400), [], "heard from 900 ms ago")
        n.touch(peer(1), now: 1400)
        XCTAssertEqual(n.tick(now: 2300), [])
        let lost = n.tick(now: 2500)
        guard case .replan(let why)? = lost.first, case .fail(let final)? = lost.last else { return XCTFail("expected loss: \(lost)") }
        XCTAssertTrue(why.contains("w1"))
        XCTAssertTrue(final.contains("no workers left"))
        XCTAssertEqual(n.tick(now: 9000), [], "reports once")
        // A new worker after the failure makes the cluster plan again.
        guard case .plan? = join(&n, 2, now: 9000).last else { return XCTFail("expected a new plan") }
    }

    func testLostWorkerMakesTheRestReplanWithANewEpoch() throws {
        var m = Membership(expectedWorkers: 2, modelSHA256: sha, heartbeatTimeout: 1000)
        _ = join(&m, 1)
        _ = join(&m, 2)
        _ = m.planned(PipelinePlan(stages: [
            PlannedStage(workerID: "w1", layers: LayerRange(0, 6)!, memoryBytes: 1),
            PlannedStage(workerID: "w2", layers: LayerRange(6, 12)!, memoryBytes: 1),
        ]), template: template)
        _ = m.assignmentReady(peer: peer(1), epoch: 1, error: nil, now: 10)
        _ = m.assignmentReady(peer: peer(2), epoch: 1, error: nil, now: 10)
        m.touch(peer(1), now: 1500)
        let d = m.tick(now: 1600)  // w2 silent since 10
        guard d.count == 2, case .replan(let why) = d[0], case .plan(let workers) = d[1] else { return XCTFail("\(d)") }
        XCTAssertTrue(why.contains("w2"))
        XCTAssertEqual(workers.map(\.workerID), ["w1"])
        let assigns = m.planned(PipelinePlan(stages: [PlannedStage(workerID: "w1", layers: LayerRange(0, 12)!, memoryBytes: 1)]),
                                template: template)
        guard case .assign(_, let a)? = assigns.first else { return XCTFail() }
        XCTAssertEqual(a.planEpoch, 2, "a re-plan has a new epoch")
        XCTAssertEqual(a.nextHop, "tcp://coord:9")
        guard case .serve(2, _, _)? = m.assignmentReady(peer: peer(1), epoch: 2, error: nil, now: 1700).first else {
            return XCTFail("expected serving epoch 2")
        }
    }

    func testPlanFailureIsReported() {
        var m = Membership(expectedWorkers: 1, modelSHA256: sha, heartbeatTimeout: 1000)
        _ = join(&m, 1)
        XCTAssertEqual(m.planFailed("too small"), [.fail(reason: "initial plan over 1 workers: too small")])
        XCTAssertEqual(m.phase, .waiting(reason: "initial plan over 1 workers: too small"))
        XCTAssertEqual(m.planHistory.last?.reason, "no plan: initial plan over 1 workers: too small")
    }

    /// Two workers serving epoch 1 (w1 layers 0-6, w2 6-12), starting from `lastEpoch`.
    private func serving(lastEpoch: UInt64 = 0, joinSettle: UInt64 = 0) -> Membership {
        var m = Membership(expectedWorkers: 2, modelSHA256: sha, heartbeatTimeout: 1000, suspectAfter: 300,
                           joinSettle: joinSettle, lastEpoch: lastEpoch)
        joinAndPlan(&m, workers: 2)
        _ = m.assignmentReady(peer: peer(1), epoch: lastEpoch + 1, error: nil, now: 10)
        _ = m.assignmentReady(peer: peer(2), epoch: lastEpoch + 1, error: nil, now: 10)
        return m
    }

    /// Workers w1...w`workers` join at 0 and are planned at `now`, 12 layers shared out evenly.
    private func joinAndPlan(_ m: inout Membership, workers: UInt8, now: UInt64 = 0) {
        for n in 1...workers { _ = join(&m, n, now: 0) }
        let share = 12 / Int(workers)
        _ = m.planned(PipelinePlan(stages: (0..<Int(workers)).map { i in
            PlannedStage(workerID: "w\(i + 1)", layers: LayerRange(i * share, i * share + share)!, memoryBytes: 1)
        }), template: template, now: now)
    }

    /// Worker `n`'s heartbeat at `t` (no steps run, no free memory reported).
    @discardableResult
    private func beat(_ m: inout Membership, _ n: UInt8, epoch: UInt64 = 0, loading: Bool = false, _ t: UInt64) -> [Membership.Directive] {
        m.heartbeat(peer: peer(n), stepsRun: 0, recentStepMs: 0, recentRowsPerStep: 0, freeMemoryBytes: 0,
                    planEpoch: epoch, loading: loading, now: t)
    }

    func testEpochsContinueAfterARestart() {
        let m = serving(lastEpoch: 41)
        XCTAssertEqual(m.epoch, 42)
        guard case .serving(42, _, _) = m.phase else { return XCTFail("\(m.phase)") }
        XCTAssertTrue(m.hasServed)
    }

    func testAWorkerJoiningWhileServingTriggersARePlanThatIncludesIt() {
        var m = serving()
        let d = join(&m, 3, now: 20)
        XCTAssertEqual(d.first, .acknowledge(peer(3), accepted: true, reason: ""))
        guard d.count == 3, case .replan(let why) = d[1], case .plan(let workers) = d[2] else { return XCTFail("\(d)") }
        XCTAssertTrue(why.contains("w3 joined"), why)
        XCTAssertEqual(workers.map(\.workerID), ["w1", "w2", "w3"])
    }

    func testAJoiningWorkerGetsLayersOnlyOnceHeardSteadilyForTheSettleTime() {
        var m = serving(joinSettle: 5000)
        // w1 and w2 keep beating; w3 joins at 20 and beats, with one gap longer than the suspect time.
        XCTAssertEqual(join(&m, 3, now: 20), [.acknowledge(peer(3), accepted: true, reason: "")], "no re-plan on the spot")
        var t: UInt64 = 20
        var replans: [(UInt64, String)] = []
        while t < 12_000 {
            t += 250
            beat(&m, 1, t)
            beat(&m, 2, t)
            // w3 silent from 2,000 to 2,600 ms (a gap > suspect time, < heartbeat timeout): the count restarts.
            if !(2000...2600).contains(t) { beat(&m, 3, t) }
            for d in m.tick(now: t) { if case .replan(let why) = d { replans.append((t, why)) } }
        }
        XCTAssertEqual(replans.count, 1, "\(replans)")
        guard let (at, why) = replans.first else { return }
        XCTAssertTrue(why.contains("w3 joined"), why)
        XCTAssertGreaterThanOrEqual(at, 2750 + 5000, "settling restarted after the gap")
        XCTAssertLessThan(at, 2750 + 5000 + 500)
        XCTAssertTrue(m.members.allSatisfy { !$0.awaitingPlan })
    }

    func testAReplanLeavesOutAWorkerWithRecentHeartbeatGapsUntilItIsSteady() {
        var m = Membership(expectedWorkers: 3, modelSHA256: sha, heartbeatTimeout: 1500, suspectAfter: 300, joinSettle: 5000)
        joinAndPlan(&m, workers: 3)
        for n: UInt8 in 1...3 { _ = m.assignmentReady(peer: peer(n), epoch: 1, error: nil, now: 10) }
        // w3's link drops packets: a 700 ms gap in its heartbeats (not long enough to be lost).
        for t in stride(from: UInt64(250), through: 3000, by: 250) {
            beat(&m, 1, t)
            beat(&m, 2, t)
            if !(1000...1600).contains(t) { beat(&m, 3, t) }
        }
        // A step failed (its message was lost on w3's link): the re-plan leaves w3 out.
        let d = m.replan("a step of epoch 1 failed", now: 3000)
        guard case .plan(let workers)? = d.last else { return XCTFail("\(d)") }
        XCTAssertEqual(workers.map(\.workerID), ["w1", "w2"])
        XCTAssertEqual(m.members.first { $0.workerID == "w3" }?.awaitingPlan, true)
        // If w1 and w2 could not hold the model, w3 is taken after all.
        let retry = m.planFailed("too little memory", now: 3000)
        guard case .plan(let all)? = retry.last else { return XCTFail("\(retry)") }
        XCTAssertEqual(all.map(\.workerID), ["w1", "w2", "w3"])
    }

    func testAJoiningWorkerIsUsedAtOnceWhenJobsWaitForCapacity() {
        var m = serving(joinSettle: 5000)
        // w2 is lost and w1 alone cannot hold the model (the planner says so): jobs wait.
        for t in stride(from: UInt64(250), through: 1500, by: 250) {
            beat(&m, 1, t)
        }
        _ = m.tick(now: 1500)
        _ = m.planFailed("too little memory", now: 1500)
        guard case .waiting = m.phase else { return XCTFail("\(m.phase)") }
        let d = join(&m, 3, now: 1600)
        guard d.count == 2, case .plan(let workers) = d[1] else { return XCTFail("no plan at once: \(d)") }
        XCTAssertEqual(workers.map(\.workerID), ["w1", "w3"])
    }

    func testALostAssignmentIsSentAgainFromTheWorkersHeartbeats() {
        var m = Membership(expectedWorkers: 2, modelSHA256: sha, heartbeatTimeout: 5000)
        joinAndPlan(&m, workers: 2, now: 100)
        XCTAssertEqual(beat(&m, 1, epoch: 1, loading: true, 600), [], "loading it")
        XCTAssertEqual(beat(&m, 2, epoch: 0, loading: false, 600), [], "too early to tell")
        XCTAssertEqual(beat(&m, 1, epoch: 1, loading: true, 1200), [], "still loading it")
        let again = beat(&m, 2, epoch: 0, loading: false, 1200)
        guard case .assign(let p, let a)? = again.first, again.count == 1 else { return XCTFail("\(again)") }
        XCTAssertEqual(p, peer(2))
        XCTAssertEqual(a.planEpoch, 1)
        XCTAssertEqual(a.layers, LayerRange(6, 12)!)
        XCTAssertEqual(beat(&m, 2, epoch: 0, loading: false, 1500), [], "not more than once a second")
        _ = m.assignmentReady(peer: peer(1), epoch: 1, error: nil, now: 1600)
        // w2 loaded it but its AssignmentReady was lost: it runs epoch 1 (not loading) and is asked again.
        XCTAssertEqual(beat(&m, 2, epoch: 1, loading: false, 2300).count, 1)
        _ = m.assignmentReady(peer: peer(2), epoch: 1, error: nil, now: 2400)
        guard case .serving(1, _, _) = m.phase else { return XCTFail("\(m.phase)") }
        XCTAssertEqual(beat(&m, 2, epoch: 1, loading: false, 5000), [], "serving: nothing to resend")
    }

    func testTheSameWorkerProcessRegisteringAgainKeepsItsPlaceWhileAPlanLoads() {
        var m = Membership(expectedWorkers: 2, modelSHA256: sha, heartbeatTimeout: 5000)
        joinAndPlan(&m, workers: 2, now: 100)
        // Same routing identity (the same process after a broken connection): no re-plan.
        XCTAssertEqual(join(&m, 2, now: 900), [.acknowledge(peer(2), accepted: true, reason: "")])
        guard case .assigning(1, _, _) = m.phase else { return XCTFail("\(m.phase)") }
        // A new identity for the same worker id is a restarted process: its stage is gone.
        let restarted = m.register(peer: peer(7), workerID: "w2", dataAddress: "tcp://w2:1", memoryBytes: 1 << 30, speed: 1,
                                   heldModels: [sha], now: 1000)
        XCTAssertTrue(restarted.contains { if case .replan = $0 { true } else { false } }, "\(restarted)")
    }

    func testReRegistrationOfAWorkerStillRunningThePlanKeepsIt() {
        var m = serving()
        // Same worker, new connection (new routing id), still running epoch 1.
        let d = m.register(peer: peer(9), workerID: "w2", dataAddress: "tcp://w2:1", memoryBytes: 1 << 30, speed: 1,
                           heldModels: [sha], runningEpoch: 1, now: 30)
        XCTAssertEqual(d, [.acknowledge(peer(9), accepted: true, reason: "")])
        guard case .serving(1, _, let peers) = m.phase else { return XCTFail("\(m.phase)") }
        XCTAssertEqual(peers, [peer(1), peer(9)])
    }

    func testARestartedWorkerOfThePlanTriggersARePlan() {
        var m = serving()
        let d = m.register(peer: peer(9), workerID: "w2", dataAddress: "tcp://w2:1", memoryBytes: 1 << 30, speed: 1,
                           heldModels: [sha], runningEpoch: 0, now: 30)
        guard d.count == 3, case .replan(let why) = d[1], case .plan(let workers) = d[2] else { return XCTFail("\(d)") }
        XCTAssertTrue(why.contains("w2"), why)
        XCTAssertEqual(workers.map(\.peer), [peer(1), peer(9)])
    }

    func testDrainMovesLayersAwayThenReleasesTheWorker() throws {
        var m = serving()
        XCTAssertThrowsError(try m.drain("nobody", now: 20))
        let d = try m.drain("w2", now: 20)
        guard d.count == 2, case .replan(let why) = d[0], case .plan(let workers) = d[1] else { return XCTFail("\(d)") }
        XCTAssertTrue(why.contains("drained w2"), why)
        XCTAssertEqual(workers.map(\.workerID), ["w1"], "a draining worker gets no layers")
        _ = m.planned(PipelinePlan(stages: [PlannedStage(workerID: "w1", layers: LayerRange(0, 12)!, memoryBytes: 1)]),
                      template: template, now: 25)
        let served = m.assignmentReady(peer: peer(1), epoch: 2, error: nil, now: 30)
        XCTAssertEqual(served.count, 2)
        XCTAssertEqual(served.last, .release(peer(2), workerID: "w2"))
        XCTAssertEqual(m.members.map(\.workerID), ["w1"])
        XCTAssertThrowsError(try m.drain("w1", now: 40), "the last worker cannot be drained")
        XCTAssertEqual(m.planHistory.map(\.epoch), [1, 2])
        XCTAssertEqual(m.planHistory.last?.reason, "operator drained w2")
    }

    func testHealthTurnsSuspectBeforeTheWorkerIsLost() {
        let m = serving()
        let w = m.members[0]
        XCTAssertEqual(m.health(w, now: 100), .healthy)
        XCTAssertEqual(m.health(w, now: 10 + m.suspectAfter + 1), .suspect)
    }

    /// A connection registered as one worker cannot register as another (that made two members
    /// with one id); the refusal says why, and ids stay unique.
    func testAConnectionCannotRegisterUnderASecondWorkerID() {
        let gib: UInt64 = 1 << 30
        var m = Membership(expectedWorkers: 3, modelSHA256: sha, heartbeatTimeout: 1000)
        _ = m.register(peer: PeerID([0, 1]), workerID: "a", dataAddress: "tcp://a:1", memoryBytes: gib, speed: 1,
                       heldModels: [sha], now: 0)
        _ = m.register(peer: PeerID([0, 2]), workerID: "b", dataAddress: "tcp://b:1", memoryBytes: gib, speed: 1,
                       heldModels: [sha], now: 0)
        let again = m.register(peer: PeerID([0, 1]), workerID: "b", dataAddress: "tcp://a:1", memoryBytes: gib, speed: 1,
                               heldModels: [sha], now: 1)
        guard case let .acknowledge(peer, accepted, reason)? = again.first else { return XCTFail("\(again)") }
        XCTAssertEqual(peer, PeerID([0, 1]))
        XCTAssertFalse(accepted)
        XCTAssertTrue(reason.contains("registered as worker a"), reason)
        XCTAssertEqual(m.members.map(\.workerID).sorted(), ["a", "b"])
        // A new connection with a known id (a restarted worker) still replaces the old one.
        _ = m.register(peer: PeerID([0, 3]), workerID: "b", dataAddress: "tcp://b:2", memoryBytes: gib, speed: 1,
                       heldModels: [sha], now: 2)
        XCTAssertEqual(m.members.map(\.workerID).sorted(), ["a", "b"])
        XCTAssertEqual(m.members.first { $0.workerID == "b" }?.peer, PeerID([0, 3]))
    }
}
