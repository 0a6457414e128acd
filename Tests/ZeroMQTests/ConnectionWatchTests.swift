import Synchronization
import XCTest
@testable import ZeroMQ

/// A ROUTER's connection watch over real sockets on loopback: peers open with their first
/// message, a peer whose socket closes is reported at once, one that connects again opens again.
final class ConnectionWatchTests: XCTestCase {
    final class Changes: Sendable {
        let list = Mutex<[ConnectionChange]>([])
        let closed = Mutex(false)
        var all: [ConnectionChange] { list.withLock { $0 } }
    }

    /// Waits (bounded) until `changes` holds `count` changes.
    func waitFor(_ count: Int, in changes: Changes, timeout: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + timeout
        while changes.all.count < count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
    }

    func dealer(_ loop: EventLoop, id: String, endpoint: String) throws -> AsyncSocket {
        try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.set(.routingID, id)
            try socket.connect(endpoint)
        }
    }

    func testPeersOpenWithTheirFirstMessageAndAClosedSocketIsReportedAtOnce() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context, name: "watch-test")
        defer {
            loop.shutdown()
            context.terminate()
        }
        let changes = Changes()
        let watch = ConnectionWatch(onChange: { c in changes.list.withLock { $0.append(c) } },
                                    onClose: { changes.closed.withLock { $0 = true } })
        let router = try AsyncSocket(loop: loop, type: .router, watch: watch) { socket in
            try socket.set(.routerHandover, 1)
            try socket.bind("tcp://127.0.0.1:*")
        }
        let endpoint = try await router.withSocket { s throws(ZMQError) in try s.lastEndpoint }
        let a = try dealer(loop, id: "a", endpoint: endpoint)
        let b = try dealer(loop, id: "b", endpoint: endpoint)
        try await a.send([Message("hello")], timeout: .seconds(2))
        let fromA = try await router.receive(timeout: .seconds(2))
        XCTAssertEqual(fromA.first?.string, "a")
        try await b.send([Message("hello")], timeout: .seconds(2))
        let fromB = try await router.receive(timeout: .seconds(2))
        XCTAssertEqual(fromB.first?.string, "b")
        XCTAssertEqual(changes.all, [.opened(peer: Array("a".utf8)), .opened(peer: Array("b".utf8))])
        try await a.send([Message("again")], timeout: .seconds(2))
        _ = try await router.receive(timeout: .seconds(2))
        XCTAssertEqual(changes.all.count, 2, "a second message on the same connection changes nothing")

        // The watch sees the close while the ROUTER waits for messages, as the coordinator's does.
        let waiting = Task { try? await router.receive(timeout: .seconds(10)) }
        let closedAt = ContinuousClock.now
        await a.close()
        try await waitFor(3, in: changes)
        let noticed = ContinuousClock.now - closedAt
        guard case let .closed(peer, silentFor)? = changes.all.dropFirst(2).first else {
            return XCTFail("no closure: \(changes.all)")
        }
        XCTAssertEqual(peer, Array("a".utf8))
        XCTAssertLessThan(silentFor, .seconds(1), "closed right after its last message")
        XCTAssertLessThan(noticed, .milliseconds(500), "a closed socket is noticed at once")

        // `a` connects again with the same routing id: it opens again, `b` never closed.
        let again = try dealer(loop, id: "a", endpoint: endpoint)
        try await again.send([Message("back")], timeout: .seconds(2))
        _ = await waiting.value
        try await waitFor(4, in: changes)
        XCTAssertEqual(changes.all.last, .opened(peer: Array("a".utf8)))
        XCTAssertFalse(changes.all.contains { if case .closed(let p, _) = $0 { p == Array("b".utf8) } else { false } },
                       "b's connection stayed open: \(changes.all)")

        await router.close()
        XCTAssertTrue(changes.closed.withLock { $0 }, "closing the socket ends the watch")
    }
}
