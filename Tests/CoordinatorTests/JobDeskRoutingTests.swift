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

/// The client endpoint in front of the job desk, on the in-memory transport: every reply goes to the
/// peer that asked, each connection's proven key decides what it may see, bad input gets an error
/// reply.
final class JobDeskRoutingTests: XCTestCase {
    static let model = Result { try TinyModel().write() }
    let codec = WireCodec()

    private struct Setup {
        let hub: InMemoryHub
        let desk: JobDesk
        let endpoint: ClientEndpoint
        let link: any Transport
        let replies: ClientOutbox
        let outbox: Task<Void, Never>
    }

    /// A desk on the bound client endpoint of a new hub, with `access` (nil: plain mode); the
    /// endpoint sends its outbox's replies once `reading` is done waiting.
    private func setUp(access: AccessList?, reading: @escaping @Sendable () async -> Void = {}) throws -> Setup {
        let hub = InMemoryHub()
        let link = try hub.bind("mem://coordinator/clients", node: "coordinator")
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: try Self.model.get()))
        let logger = Logger(label: "desk") { _ in SwiftLogNoOpLogHandler() }
        let outbox = ClientOutbox(limit: 1000, logger: logger)
        let desk = JobDesk(tokenizer: tokenizer, template: nil, contextLimit: 256, logger: logger, journal: InMemoryJobJournal(),
                           policy: JobDeskPolicy(queueTimeout: .seconds(30)), outbox: outbox)
        let endpoint = ClientEndpoint(link: link, codec: codec, desk: desk, outbox: outbox, access: access, logger: logger)
        return Setup(hub: hub, desk: desk, endpoint: endpoint, link: link, replies: outbox, outbox: Task {
            await reading()
            await endpoint.runOutbox()
        })
    }

    /// Sends `body` from `client`, lets the desk handle what arrived, returns the client's reply.
    private func ask(_ client: any Transport, _ body: Caravan_V1_Envelope.OneOf_Body, requestID: UInt64 = 5,
                     _ setup: Setup) async throws -> (Caravan_V1_Envelope.OneOf_Body, UInt64) {
        try await client.send(try codec.encode(body, requestID: requestID), timeout: .seconds(1))
        await setup.endpoint.handle(try await setup.link.receive(within: .seconds(5)))
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
        await setup.endpoint.handle(try await setup.link.receive(within: .seconds(5)))
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
        guard case .error(let noDrain) = try await ask(owner, .drainRequest(.with { $0.workerID = "w" }), setup).0 else {
            return XCTFail("a client drains")
        }
        XCTAssertEqual(noDrain.code, "forbidden", "draining is for admins")
        XCTAssertEqual(setup.desk.activeJobs, 1, "only the client's job was taken")
    }

    /// Sends `body` from `client` and lets the endpoint handle it, without waiting for a reply.
    private func tell(_ client: any Transport, _ body: Caravan_V1_Envelope.OneOf_Body, _ setup: Setup) async throws {
        try await client.send(try codec.encode(body), timeout: .seconds(1))
        await setup.endpoint.handle(try await setup.link.receive(within: .seconds(5)))
    }

    private func event(_ client: any Transport) async throws -> Caravan_V1_JobEvent {
        let (body, _) = try reply(try await client.receive(within: .seconds(5)))
        guard case .jobEvent(let e) = body else { throw TransportError(.failed, "not a job event: \(body)") }
        return e
    }

    /// Cancel ends the stream (no other reply), a second cancel answers with the status, another
    /// peer attaching gets the accepted event and the end numbered on; unknown jobs are not found,
    /// a job admission refuses gets the refusal as its only event (answering the request), and
    /// what is not ready says so.
    func testCancelAttachUnknownJobsAndRefusals() async throws {
        let setup = try setUp(access: nil)
        defer { setup.outbox.cancel() }
        let a = setup.hub.connect("mem://coordinator/clients", node: "client-a")
        let b = setup.hub.connect("mem://coordinator/clients", node: "client-b")
        let (accepted, _) = try await ask(a, submit("a-1"), setup)
        guard case .jobEvent(let job) = accepted, case .accepted? = job.event else { return XCTFail("\(accepted)") }
        let cancel = Caravan_V1_Envelope.OneOf_Body.jobCancel(.with { $0.jobID = job.jobID })
        try await tell(a, cancel, setup)
        let end = try await event(a)
        guard case .finished(let finish)? = end.event else { return XCTFail("\(end)") }
        XCTAssertEqual(finish.reason, .cancelled)
        XCTAssertEqual(end.sequence, 2)
        guard case .jobStatus(let status) = try await ask(a, cancel, setup).0 else { return XCTFail("no status") }
        XCTAssertEqual(status.state, .cancelled, "nothing left to cancel")
        try await tell(b, .jobAttach(.with { $0.jobID = job.jobID }), setup)
        let (again, replayedEnd) = (try await event(b), try await event(b))
        guard case .accepted? = again.event, case .finished(let f)? = replayedEnd.event else { return XCTFail("\(again) \(replayedEnd)") }
        XCTAssertEqual(f.reason, .cancelled)
        XCTAssertEqual([again.sequence, replayedEnd.sequence], [3, 4])
        XCTAssertEqual(replayedEnd.clientRequestID, "a-1")
        for unknown: Caravan_V1_Envelope.OneOf_Body in [
            .jobStatusRequest(.with { $0.jobID = "job-0" }), .jobCancel(.with { $0.jobID = "job-0" }),
            .jobAttach(.with { $0.jobID = "job-0" }), .jobStatusRequest(.with { $0.jobID = "not a job id" }),
        ] {
            guard case .error(let e) = try await ask(b, unknown, setup).0 else { return XCTFail("\(unknown)") }
            XCTAssertEqual(e.code, "not_found")
        }
        let outside = InProcessClient.job(prompt: [72, 999], tokens: 4, id: "outside")
        let (refused, requestID) = try await ask(a, .jobSubmit(outside), requestID: 11, setup)
        guard case .jobEvent(let r) = refused, case .error(let e)? = r.event else { return XCTFail("\(refused)") }
        XCTAssertEqual(e.code, .invalidRequest)
        XCTAssertEqual(e.message, "token id 999 is outside the vocabulary (257)")
        XCTAssertEqual([requestID, r.sequence], [11, 1])
        XCTAssertEqual(r.clientRequestID, "outside")
        XCTAssertNotEqual(r.jobID, job.jobID)
        guard case .hello(let hello) = try await ask(a, .hello(.with { $0.protocolVersion = WireProtocol.version; $0.role = .client; $0.nodeID = "client-a" }), setup).0 else {
            return XCTFail("no hello")
        }
        XCTAssertEqual(hello.role, .coordinator)
        for notReady: Caravan_V1_Envelope.OneOf_Body in [.clusterStatusRequest(.init()), .drainRequest(.with { $0.workerID = "w" })] {
            guard case .error(let e) = try await ask(a, notReady, setup).0 else { return XCTFail("\(notReady)") }
            XCTAssertEqual(e.code, "unavailable")
        }
        XCTAssertEqual(setup.desk.activeJobs, 0)
    }

    /// A stopping coordinator flushes its outbox before it closes the client socket: the flush
    /// waits for a reader that is late, the replies queued before it arrive, and replies queued
    /// after it are not counted as waiting. Before the flush a drained job's `finished`, queued
    /// but not yet sent when the drain saw no job left, was lost with the cancelled outbox.
    func testAFlushWaitsUntilEveryQueuedReplyIsSent() async throws {
        let late = AsyncStream<Void>.makeStream()
        let setup = try setUp(access: nil, reading: { for await _ in late.stream { return } })
        defer { setup.outbox.cancel() }
        let a = setup.hub.connect("mem://coordinator/clients", node: "client-a")
        for id in ["a-1", "a-2", "a-3"] {
            try await a.send(try codec.encode(submit(id), requestID: 1), timeout: .seconds(1))
            await setup.endpoint.handle(try await setup.link.receive(within: .seconds(5)))
        }
        XCTAssertEqual(setup.replies.queued, 3, "three accepted events wait for the reader")
        let tooSoon = await setup.replies.flush(within: .milliseconds(100))
        XCTAssertFalse(tooSoon, "nobody sent them yet")
        late.continuation.yield()
        let flushed = await setup.replies.flush(within: .seconds(5))
        XCTAssertTrue(flushed)
        XCTAssertEqual(setup.replies.queued, 0)
        var ids: [String] = []
        for _ in 0..<3 {
            guard case .jobEvent(let e) = try reply(try await a.receive(within: .seconds(5))).0, case .accepted? = e.event else { return XCTFail("not an accepted event") }
            ids.append(e.clientRequestID)
        }
        XCTAssertEqual(ids, ["a-1", "a-2", "a-3"])
        setup.replies.enqueue(PeerID(Array("client-a".utf8)), .error(code: "internal", message: "after the flush"))
        XCTAssertEqual(setup.replies.queued, 0, "a finished outbox takes nothing more")
    }
}
