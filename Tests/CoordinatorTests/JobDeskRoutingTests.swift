import CaravanTesting
import CaravanTransport
import CaravanWire
import Foundation
import GGUF
import Logging
import TestSupport
import Tokenizer
import XCTest
import ZeroMQ
@testable import Coordinator

/// The job desk's client link on the in-memory transport: every reply goes to the peer that asked,
/// each connection's proven key decides what it may see, bad input gets an error reply.
final class JobDeskRoutingTests: XCTestCase {
    static let model = Result { try TinyModel().write() }
    let codec = WireCodec()

    private struct Setup {
        let hub: InMemoryHub
        let desk: JobDesk
        let link: any Transport
        let outbox: Task<Void, Never>
    }

    /// A desk on the bound client endpoint of a new hub, with `access` (nil: plain mode).
    private func setUp(access: AccessList?) throws -> Setup {
        let hub = InMemoryHub()
        let link = try hub.bind("mem://coordinator/clients", node: "coordinator")
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: try Self.model.get()))
        let desk = JobDesk(clients: link, codec: codec, tokenizer: tokenizer, template: nil, contextLimit: 256,
                           logger: Logger(label: "desk") { _ in SwiftLogNoOpLogHandler() }, journal: InMemoryJobJournal(),
                           policy: JobDeskPolicy(queueTimeout: .seconds(30)), access: access)
        return Setup(hub: hub, desk: desk, link: link, outbox: Task { await desk.runOutbox() })
    }

    /// Sends `body` from `client`, lets the desk handle what arrived, returns the client's reply.
    private func ask(_ client: any Transport, _ body: Caravan_V1_Envelope.OneOf_Body, requestID: UInt64 = 5,
                     _ setup: Setup) async throws -> (Caravan_V1_Envelope.OneOf_Body, UInt64) {
        try await client.send(try codec.encode(body, requestID: requestID), timeout: .seconds(1))
        await setup.desk.handle(try await setup.link.receive(within: .seconds(5)))
        return try reply(try await client.receive(within: .seconds(5)))
    }

    private func reply(_ delivery: Delivery) throws -> (Caravan_V1_Envelope.OneOf_Body, UInt64) {
        guard case .message(let body, let requestID) = try codec.decode(delivery.frames) else { throw TransportError(.failed, "not a message") }
        return (body, requestID)
    }

    private func submit(_ id: String) -> Caravan_V1_Envelope.OneOf_Body {
        .jobSubmit(InProcessClient.job(prompt: Array("hello".utf8).map(Int32.init), tokens: 4, id: id))
    }

    func testRepliesGoToTheAskingPeerAndBadInputGetsAnErrorReply() async throws {
        let setup = try setUp(access: nil)
        defer { setup.outbox.cancel() }
        let a = setup.hub.connect("mem://coordinator/clients", node: "client-a")
        let b = setup.hub.connect("mem://coordinator/clients", node: "client-b")
        // A submits: A gets the accepted event (the job waits: no pipeline serves).
        let (accepted, _) = try await ask(a, submit("a-1"), setup)
        guard case .jobEvent(let event) = accepted, case .accepted? = event.event else { return XCTFail("\(accepted)") }
        XCTAssertEqual(event.clientRequestID, "a-1")
        // B asks for its status (plain mode: every peer every role) under its own request id.
        let (status, requestID) = try await ask(b, .jobStatusRequest(.with { $0.jobID = event.jobID }), requestID: 9, setup)
        XCTAssertEqual(requestID, 9)
        guard case .jobStatus(let s) = status else { return XCTFail("\(status)") }
        XCTAssertEqual(s.jobID, event.jobID)
        XCTAssertEqual(s.state, .queued)
        // Garbage from A: an error reply to A.
        try await a.send([Message([0xFF, 0xFE, 0x01])], timeout: .seconds(1))
        await setup.desk.handle(try await setup.link.receive(within: .seconds(5)))
        guard case .error(let bad) = try reply(try await a.receive(within: .seconds(5))).0 else { return XCTFail("no error reply") }
        XCTAssertEqual(bad.code, "invalid_message")
        // A message kind the client endpoint does not take: an error reply to B.
        let (unsupported, _) = try await ask(b, .heartbeat(.with { $0.senderID = "b" }), setup)
        guard case .error(let e) = unsupported else { return XCTFail("\(unsupported)") }
        XCTAssertEqual(e.code, "unsupported")
        XCTAssertEqual(setup.hub.delivered(from: "coordinator", to: "client-a"), 2, "A got exactly its two replies")
        XCTAssertEqual(setup.hub.delivered(from: "coordinator", to: "client-b"), 2, "B got exactly its two replies")
    }

    func testTheProvenKeyDecidesWhatAPeerMaySee() async throws {
        let keys = try (0..<3).map { _ in try CurveKeyPair.generate().publicKey }
        let clientsFile = try TempFiles.write(Array((keys[0] + "\n" + keys[1] + "\n").utf8), name: "authorized_clients")
        let workersFile = try TempFiles.write(Array((keys[2] + "\n").utf8), name: "authorized_workers")
        let access = try AccessList(files: .init(workers: workersFile, clients: clientsFile), openClients: false)
        let setup = try setUp(access: access)
        defer { setup.outbox.cancel() }
        let owner = setup.hub.connect("mem://coordinator/clients", node: "owner", identity: keys[0])
        let other = setup.hub.connect("mem://coordinator/clients", node: "other", identity: keys[1])
        let worker = setup.hub.connect("mem://coordinator/clients", node: "worker", identity: keys[2])
        let anonymous = setup.hub.connect("mem://coordinator/clients", node: "anonymous")
        let (accepted, _) = try await ask(owner, submit("mine"), setup)
        guard case .jobEvent(let event) = accepted else { return XCTFail("\(accepted)") }
        let statusRequest = Caravan_V1_Envelope.OneOf_Body.jobStatusRequest(.with { $0.jobID = event.jobID })
        guard case .jobStatus = try await ask(owner, statusRequest, setup).0 else { return XCTFail("the owner sees its job") }
        guard case .error(let hidden) = try await ask(other, statusRequest, setup).0 else { return XCTFail("another client") }
        XCTAssertEqual(hidden.code, "not_found", "another client's job does not exist for it")
        for stranger in [worker, anonymous] {
            guard case .error(let refused) = try await ask(stranger, submit("x"), setup).0 else { return XCTFail("a stranger") }
            XCTAssertEqual(refused.code, "forbidden")
        }
        XCTAssertEqual(setup.desk.activeJobs, 1, "only the client's job was taken")
    }
}
