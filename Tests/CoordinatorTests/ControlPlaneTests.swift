import CaravanCore
import CaravanTesting
import CaravanTransport
import CaravanWire
import Fingerprint
import Foundation
import GGUF
import Logging
import Planning
import Tokenizer
import XCTest
import ZeroMQ
@testable import Coordinator

/// The coordinator's control plane on the in-memory transport, with a scripted worker: the
/// handshake, the assignment, the serve order once the stage is ready, and answers routed to the
/// worker that asked.
final class ControlPlaneTests: XCTestCase {
    static let model = Result { try TinyModel().write() }
    let codec = WireCodec()

    func testAWorkerRegistersIsAssignedTheModelAndItsReadinessStartsServing() async throws {
        let path = try Self.model.get()
        let logger = Logger(label: "plane") { _ in SwiftLogNoOpLogHandler() }
        let bench = try ControlPlaneBench(modelPath: path, codec: codec, logger: logger, deskLogger: logger)
        let (hub, control, facts, fingerprint, desk, plane) = (bench.hub, bench.control, bench.facts, bench.fingerprint, bench.desk, bench.plane)
        let servings = bench.servings

        let worker = hub.connect("mem://coordinator/control", node: "worker-1", routingID: Array("w:worker-1".utf8))
        let stranger = hub.connect("mem://coordinator/control", node: "stranger")
        func send(_ link: any Transport, _ body: Caravan_V1_Envelope.OneOf_Body) async throws {
            try await link.send(try codec.encode(body), timeout: .seconds(1))
            await plane.handle(try await control.receive(within: .seconds(5)))
        }
        func next(_ link: any Transport) async throws -> Caravan_V1_Envelope.OneOf_Body {
            guard case .message(let body, _) = try codec.decode(try await link.receive(within: .seconds(5)).frames) else {
                throw TransportError(.failed, "not a control message")
            }
            return body
        }

        try await send(worker, .hello(.with { $0.role = .worker; $0.nodeID = "worker-1"; $0.protocolVersion = WireProtocol.version }))
        guard case .hello(let hello) = try await next(worker) else { return XCTFail("no hello back") }
        XCTAssertEqual(hello.role, .coordinator)
        // A bad frame from another peer is dropped; nothing goes to anyone.
        try await stranger.send([Message([1, 2, 3])], timeout: .seconds(1))
        await plane.handle(try await control.receive(within: .seconds(5)))
        XCTAssertEqual(hub.delivered(from: "coordinator", to: "stranger"), 0)

        try await send(worker, .register(.with { r in
            r.workerID = "worker-1"
            r.dataAddress = "mem://worker-1/data"
            r.capabilities.cores = 1
            r.capabilities.freeMemoryBytes = 1 << 30
            r.capabilities.totalMemoryBytes = 1 << 30
            r.capabilities.measuredGflops = 1
            r.capabilities.models = [.with { $0.model.sha256 = fingerprint.sha256; $0.model.name = fingerprint.name }]
        }))
        guard case .registerAck(let ack) = try await next(worker) else { return XCTFail("no acknowledgement") }
        XCTAssertTrue(ack.accepted, ack.reason)
        XCTAssertEqual(ack.heartbeatIntervalMs, 250)
        // The one expected worker registered: it is planned over and assigned every layer.
        guard case .stageAssignment(let wire) = try await next(worker) else { return XCTFail("no assignment") }
        let assignment = try StageAssignment(wire: wire)
        XCTAssertEqual(assignment.layers, LayerRange(0, facts.layerCount))
        XCTAssertEqual(assignment.nextHop, "mem://coordinator/results", "the last stage sends to the result endpoint")

        try await send(worker, .assignmentReady(.with {
            $0.planEpoch = assignment.planEpoch
            $0.workerID = "worker-1"
            $0.ready = true
        }))
        var orders = servings.makeAsyncIterator()
        let served = await orders.next()
        let order = try XCTUnwrap(served)
        XCTAssertEqual(order.epoch, assignment.planEpoch)
        XCTAssertEqual(order.stages.map(\.address), ["mem://worker-1/data"])
        XCTAssertTrue(plane.isServing(epoch: assignment.planEpoch))

        // Releasing sequences goes to the serving plan's worker.
        await plane.release([7], epoch: assignment.planEpoch)
        guard case .releaseSequences(let release) = try await next(worker) else { return XCTFail("no release") }
        XCTAssertEqual(release.sequenceIds, [7])
        XCTAssertEqual(hub.delivered(from: "coordinator", to: "stranger"), 0)

        // The job side reports pipeline faults on the desk's stream; the plane follows it: a fault
        // of an epoch that does not serve changes nothing, one of the serving epoch re-plans.
        let following = Task { await plane.followPipelineFaults() }
        defer { following.cancel() }
        let sentBefore = hub.delivered(from: "coordinator", to: "worker-1")
        desk.reportPipelineFault(PipelineFault(epoch: assignment.planEpoch + 7, reason: "a stale lane"))
        desk.reportPipelineFault(PipelineFault(epoch: assignment.planEpoch, reason: "a step failed"))
        guard case .stageAssignment(let replanned) = try await next(worker) else { return XCTFail("no new assignment") }
        XCTAssertEqual(replanned.planEpoch, assignment.planEpoch + 1, "one re-plan, for the serving epoch only")
        XCTAssertFalse(plane.isServing(epoch: assignment.planEpoch))
        XCTAssertEqual(hub.delivered(from: "coordinator", to: "worker-1"), sentBefore + 1)
    }
}
