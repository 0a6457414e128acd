import XCTest
@testable import ZeroMQ

/// The fd -> peer bookkeeping of a ROUTER's connection watch, fed as the loop thread feeds it.
final class ConnectionTableTests: XCTestCase {
    let a: [UInt8] = Array("w:a".utf8)
    let b: [UInt8] = Array("w:b".utf8)
    let t0 = ContinuousClock.now

    func at(_ ms: Int) -> ContinuousClock.Instant { t0 + .milliseconds(ms) }

    func testAPeerOpensWithItsFirstMessageAndClosesWithItsConnection() {
        var table = ConnectionTable()
        table.accepted(fd: 7)
        XCTAssertEqual(table.received(from: a, fd: 7, at: at(0)), .opened(peer: a))
        XCTAssertNil(table.received(from: a, fd: 7, at: at(100)), "later messages on the same connection change nothing")
        XCTAssertEqual(table.connection(of: a), 7)
        XCTAssertEqual(table.disconnected(fd: 7, at: at(130)), .closed(peer: a, silentFor: .milliseconds(30)),
                       "the silence is counted from the last message")
        XCTAssertNil(table.connection(of: a))
        XCTAssertEqual(table.openConnections, 0)
        XCTAssertNil(table.disconnected(fd: 7, at: at(140)), "a second close of the same descriptor is nothing")
    }

    func testAReconnectOnANewDescriptorMovesThePeerAndTheOldCloseIsNoClosure() {
        var table = ConnectionTable()
        table.accepted(fd: 7)
        _ = table.received(from: a, fd: 7, at: at(0))
        // The peer made its connection again (ROUTER_HANDOVER): its messages come on fd 9 now.
        table.accepted(fd: 9)
        XCTAssertEqual(table.received(from: a, fd: 9, at: at(50)), .opened(peer: a), "connected again")
        XCTAssertEqual(table.connection(of: a), 9)
        XCTAssertNil(table.disconnected(fd: 7, at: at(60)), "the old connection closing does not close the peer")
        XCTAssertEqual(table.disconnected(fd: 9, at: at(80)), .closed(peer: a, silentFor: .milliseconds(30)))
    }

    func testAReconnectAfterTheCloseOpensThePeerAgain() {
        var table = ConnectionTable()
        table.accepted(fd: 7)
        _ = table.received(from: a, fd: 7, at: at(0))
        XCTAssertEqual(table.disconnected(fd: 7, at: at(10)), .closed(peer: a, silentFor: .milliseconds(10)))
        table.accepted(fd: 8)
        XCTAssertEqual(table.received(from: a, fd: 8, at: at(20)), .opened(peer: a))
    }

    func testUnknownDescriptorsAreIgnored() {
        var table = ConnectionTable()
        // Accepted before the watch began, or a message read after its connection closed.
        XCTAssertNil(table.received(from: a, fd: 5, at: at(0)))
        XCTAssertNil(table.connection(of: a))
        XCTAssertNil(table.disconnected(fd: 5, at: at(10)))
        // A connection that closed before it carried a message (a refused handshake) closes no peer.
        table.accepted(fd: 6)
        XCTAssertNil(table.disconnected(fd: 6, at: at(20)))
        XCTAssertEqual(table.openConnections, 0)
    }

    func testAReusedDescriptorBelongsToItsNewConnection() {
        var table = ConnectionTable()
        table.accepted(fd: 7)
        _ = table.received(from: a, fd: 7, at: at(0))
        XCTAssertEqual(table.disconnected(fd: 7, at: at(10)), .closed(peer: a, silentFor: .milliseconds(10)))
        // A's last message, still queued, is read after the close: it opens nothing.
        XCTAssertNil(table.received(from: a, fd: 7, at: at(11)))
        XCTAssertNil(table.connection(of: a))
        // The kernel gives the number to B's new connection.
        table.accepted(fd: 7)
        XCTAssertEqual(table.received(from: b, fd: 7, at: at(20)), .opened(peer: b))
        XCTAssertNil(table.connection(of: a))
        XCTAssertEqual(table.disconnected(fd: 7, at: at(30)), .closed(peer: b, silentFor: .milliseconds(10)))
    }

    func testAMissedCloseIsNoClosureOfTheNewConnectionsPeer() {
        var table = ConnectionTable()
        table.accepted(fd: 7)
        _ = table.received(from: a, fd: 7, at: at(0))
        // An accept on a descriptor still held means its close was never seen: A is no longer on it.
        table.accepted(fd: 7)
        XCTAssertNil(table.connection(of: a))
        XCTAssertEqual(table.received(from: b, fd: 7, at: at(5)), .opened(peer: b))
        XCTAssertEqual(table.disconnected(fd: 7, at: at(6)), .closed(peer: b, silentFor: .milliseconds(1)))
    }

    func testTheClusterLivenessTellsAPeersCloseFromItsOwnDrop() {
        let liveness = LinkLiveness.cluster
        XCTAssertEqual(liveness.shortestOwnDrop, .milliseconds(2000), "ZMTP heartbeats drop first, after 2 s of silence")
        XCTAssertTrue(liveness.closedByPeer(silentFor: .milliseconds(300)), "a crash between two heartbeats")
        XCTAssertFalse(liveness.closedByPeer(silentFor: .milliseconds(2100)), "a frozen peer dropped by the ZMTP heartbeat")
        XCTAssertFalse(liveness.closedByPeer(silentFor: .milliseconds(1000)), "the margin")
        let noHeartbeat = LinkLiveness(heartbeatInterval: 0, heartbeatTimeout: 0, connectTimeout: 0, maxRetransmit: 0, reconnectMax: 0)
        XCTAssertTrue(noHeartbeat.closedByPeer(silentFor: .seconds(3600)), "without liveness checks only the peer closes")
    }
}

