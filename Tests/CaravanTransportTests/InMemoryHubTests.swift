import CaravanTransport
import XCTest
import ZeroMQ

/// The in-memory twin behaves as the daemons expect of a ZeroMQ ROUTER/DEALER pair: senders are
/// named by routing id and carry the identity their link proved, replies find their peer, queues
/// are bounded, and faults (drop, kill, pause) act on whole links and nodes.
final class InMemoryHubTests: XCTestCase {
    private func text(_ d: Delivery) -> [String] { d.frames.map { String(decoding: $0.bytes, as: UTF8.self) } }

    func testAPeerIsNamedByItsRoutingIDAndIdentityAndRepliesFindIt() async throws {
        let hub = InMemoryHub()
        let server = try hub.bind("inproc://control", node: "coordinator")
        let a = hub.connect("inproc://control", node: "w1", identity: "key-a")
        let b = hub.connect("inproc://control", node: "w2", identity: "key-b")
        try await a.send([Message("hello"), Message("from a")], timeout: .seconds(1))
        try await b.send([Message("from b")], timeout: .seconds(1))
        let first = try await server.receive()
        let second = try await server.receive()
        XCTAssertEqual(text(first), ["hello", "from a"], "frames arrive whole and in order")
        XCTAssertEqual(first.identity, "key-a")
        XCTAssertEqual(second.identity, "key-b")
        XCTAssertEqual(first.sender, a.routingID)
        XCTAssertNotEqual(first.sender, second.sender)
        // A reply by routing id reaches only its peer.
        try await server.send([Message("to b")], to: try XCTUnwrap(second.sender), timeout: .seconds(1))
        let reply = try await b.receive()
        XCTAssertEqual(text(reply), ["to b"])
        XCTAssertEqual(hub.delivered(from: "w1", to: "coordinator"), 1)
        XCTAssertEqual(hub.delivered(from: "coordinator", to: "w1"), 0)
    }

    func testABoundedQueueMakesTheSenderWait() async throws {
        let hub = InMemoryHub(capacity: 2)
        let server = try hub.bind("inproc://data", node: "worker")
        let client = hub.connect("inproc://data", node: "coordinator")
        try await client.send([Message("1")], timeout: .milliseconds(100))
        try await client.send([Message("2")], timeout: .milliseconds(100))
        do {
            try await client.send([Message("3")], timeout: .milliseconds(50))
            XCTFail("a third message fitted in a queue of two")
        } catch {
            XCTAssertEqual(error.kind, .timedOut)
        }
        let got1 = try await server.receive()
        XCTAssertEqual(text(got1), ["1"])
        try await client.send([Message("3")], timeout: .milliseconds(100))  // room again
        let got2 = try await server.receive()
        XCTAssertEqual(text(got2), ["2"])
        let got3 = try await server.receive()
        XCTAssertEqual(text(got3), ["3"])
    }

    func testADroppedLinkLosesMessagesOneWayOnly() async throws {
        let hub = InMemoryHub()
        let server = try hub.bind("inproc://results", node: "coordinator")
        let worker = hub.connect("inproc://results", node: "w3")
        hub.setFault(from: "w3", to: "coordinator", .drop)
        try await worker.send([Message("lost")], timeout: .seconds(1))
        hub.setFault(from: "w3", to: "coordinator", nil)
        try await worker.send([Message("kept")], timeout: .seconds(1))
        let got4 = try await server.receive()
        XCTAssertEqual(text(got4), ["kept"])
        XCTAssertEqual(hub.delivered(from: "w3", to: "coordinator"), 1)
    }

    func testAKilledNodesEndpointsVanishAndItsTransportsClose() async throws {
        let hub = InMemoryHub()
        let data = try hub.bind("inproc://w2-data", node: "w2")
        _ = try hub.bind("inproc://control", node: "coordinator")
        let control = hub.connect("inproc://control", node: "w2")
        let previous = hub.connect("inproc://w2-data", node: "w1")
        let waiting = Task { try await data.receive() }
        hub.kill("w2")
        XCTAssertTrue(hub.isKilled("w2"))
        do {
            _ = try await waiting.value
            XCTFail("a receive on a killed node returned a message")
        } catch let error as TransportError {
            XCTAssertEqual(error.kind, .closed)
        }
        do {
            _ = try await control.receive()
            XCTFail("a killed node's connection still receives")
        } catch {
            XCTAssertTrue(error.endsStream)
        }
        // Its peers may still send (into the void, as to a dead machine) without blocking.
        try await previous.send([Message("step")], timeout: .milliseconds(200))
        XCTAssertEqual(hub.delivered(from: "w1", to: "w2"), 0)
        XCTAssertThrowsError(try hub.bind("inproc://w2-data-again", node: "w2"), "a killed node cannot come back under its name")
        // The address is free for another node (a restarted worker under a new name).
        _ = try hub.bind("inproc://w2-data", node: "w4")
    }

    func testAPausedNodeNeitherReadsNorSendsUntilResumed() async throws {
        let hub = InMemoryHub()
        let server = try hub.bind("inproc://control", node: "coordinator")
        let worker = hub.connect("inproc://control", node: "w1")
        hub.pause("coordinator")
        try await worker.send([Message("beat")], timeout: .seconds(1))
        let read = Task { try await server.receive() }
        try await Task.sleep(for: .milliseconds(50))
        hub.resume("coordinator")
        let got = try await read.value
        XCTAssertEqual(text(got), ["beat"], "the message waited for the pause to end")
    }

    /// The bound side's connection events, as a ZeroMQ ROUTER's watch reports them: a peer opens
    /// when it connects, a killed node's connection closes by its end at once (as the kernel
    /// closes a killed process's sockets), a paused node's stays open, and a closed bound side
    /// ends the stream.
    func testTheBoundSideSeesConnectionsOpenAndAKilledNodesClose() async throws {
        let hub = InMemoryHub()
        let server = try hub.bind("inproc://control", node: "coordinator")
        var events = server.connectionEvents().makeAsyncIterator()
        _ = hub.connect("inproc://control", node: "w1", routingID: Array("w:1".utf8))
        let b = hub.connect("inproc://control", node: "w2", routingID: Array("w:2".utf8))
        let first = await events.next()
        let second = await events.next()
        XCTAssertEqual(first, .opened(peer: Array("w:1".utf8)))
        XCTAssertEqual(second, .opened(peer: Array("w:2".utf8)))
        hub.pause("w2")
        hub.kill("w1")
        let third = await events.next()
        XCTAssertEqual(third, .closed(peer: Array("w:1".utf8), cause: .peerEnded), "w1 killed; w2 only paused")
        hub.resume("w2")
        await b.close()
        let fourth = await events.next()
        XCTAssertEqual(fourth, .closed(peer: Array("w:2".utf8), cause: .peerEnded))
        await server.close()
        let end = await events.next()
        XCTAssertNil(end, "closing the bound side ends its events")
        // A connected side has no connection events.
        var none = b.connectionEvents().makeAsyncIterator()
        let nothing = await none.next()
        XCTAssertNil(nothing)
    }
}
