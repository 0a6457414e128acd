import XCTest
@testable import ZeroMQ

final class SocketTests: XCTestCase {
    func testDealerRouterMultipartRoundTrip() throws {
        let context = try Context()
        let (router, dealer, endpoint) = try makeRouterDealer(context: context, dealer: { try $0.set(.routingID, "worker-1") })
        XCTAssertTrue(endpoint.hasPrefix("tcp://127.0.0.1:"))
        XCTAssertNotEqual(endpoint, "tcp://127.0.0.1:*")

        try dealer.send([Array("hello".utf8), [], [0, 1, 2, 255]])
        let request = try router.receive()
        XCTAssertEqual(request.count, 4, "routing id + 3 frames")
        XCTAssertEqual(request[0].string, "worker-1")
        XCTAssertEqual(request[1].string, "hello")
        XCTAssertEqual(request[2].count, 0)
        XCTAssertEqual(request[3].bytes, [0, 1, 2, 255])
        XCTAssertTrue(request[0].hasMore && request[2].hasMore)
        XCTAssertFalse(request[3].hasMore)

        try router.send([request[0], Message("reply"), Message("two")])
        let reply = try dealer.receiveBytes()
        XCTAssertEqual(reply, [Array("reply".utf8), Array("two".utf8)])
        router.close()
        dealer.close()
        context.terminate()
    }

    func testLargeZeroCopyPayloadArrivesIntactAndBufferIsReleased() throws {
        let context = try Context()
        let (router, dealer, _) = try makeRouterDealer(context: context)
        let size = 4 << 20
        var buffer: FrameBuffer? = FrameBuffer(count: size)
        var expected = [UInt8](repeating: 0, count: size)
        var state: UInt32 = 0x1234_5678
        for i in 0..<size {
            state = state &* 1_664_525 &+ 1_013_904_223
            expected[i] = UInt8(truncatingIfNeeded: state >> 24)
        }
        buffer!.withUnsafeMutableBytes { raw in expected.withUnsafeBytes { raw.copyMemory(from: $0) } }
        weak let weakBuffer = buffer
        XCTAssertFalse(buffer!.isSealed)
        try dealer.send([Message("tensor"), Message(zeroCopy: buffer!)])
        XCTAssertTrue(buffer!.isSealed)
        buffer = nil

        let frames = try router.receive()
        XCTAssertEqual(frames.count, 3)
        XCTAssertEqual(frames[2].count, size)
        let intact = frames[2].withUnsafeBytes { raw in expected.withUnsafeBytes { $0.elementsEqual(raw) } }
        XCTAssertTrue(intact)
        // libzmq calls the free callback once its I/O thread has written the frame.
        XCTAssertTrue(eventually { weakBuffer == nil }, "libzmq never released the zero-copy buffer")
    }

    func testReceiveTimeoutFires() throws {
        let context = try Context()
        let (router, _, _) = try makeRouterDealer(context: context, router: { try $0.set(.receiveTimeout, 150) })
        XCTAssertEqual(try router.get(.receiveTimeout), 150)
        let start = Date()
        XCTAssertThrowsError(try router.receive()) { error in
            XCTAssertEqual((error as? ZMQError)?.isTimeout, true, "\(error)")
        }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThan(elapsed, 0.1)
        XCTAssertLessThan(elapsed, 1.5)
        XCTAssertThrowsError(try router.receive(dontWait: true)) { error in
            XCTAssertEqual((error as? ZMQError)?.code, EAGAIN)
        }
    }

    func testOversizedMessageIsDroppedAndSocketKeepsWorking() throws {
        let context = try Context()
        let (router, dealer, _) = try makeRouterDealer(
            context: context,
            router: { try $0.set(.maxMessageSize, 1024); try $0.set(.receiveTimeout, 300) },
            dealer: { try $0.set(.reconnectInterval, 20) }
        )
        XCTAssertEqual(try router.get(.maxMessageSize), 1024)
        try dealer.send([Array("small".utf8)])
        XCTAssertEqual(try router.receive().last?.string, "small")

        try dealer.send([[UInt8](repeating: 7, count: 4096)])
        XCTAssertThrowsError(try router.receive(), "an oversized frame must never be delivered") { error in
            XCTAssertEqual((error as? ZMQError)?.isTimeout, true, "\(error)")
        }
        // libzmq dropped the connection; the dealer reconnects and later messages get through.
        try router.set(.receiveTimeout, 3000)
        try dealer.send([Array("after".utf8)])
        XCTAssertEqual(try router.receive().last?.string, "after")
    }

    func testRouterMandatoryReportsUnknownPeer() throws {
        let context = try Context()
        let router = try Socket(context: context, type: .router)
        try router.set(.routerMandatory, 1)
        try router.bind("tcp://127.0.0.1:*")
        XCTAssertThrowsError(try router.send([Array("nobody".utf8), Array("x".utf8)])) { error in
            XCTAssertEqual((error as? ZMQError)?.code, ZMQErrorCode.hostUnreachable, "\(error)")
        }
    }

    func testOptionsRoundTripAndErrorsNameTheOperation() throws {
        let context = try Context()
        let socket = try Socket(context: context, type: .dealer)
        XCTAssertEqual(try socket.get(.linger), 0, "sockets default to linger 0")
        try socket.set(.sendHighWaterMark, 10)
        try socket.set(.receiveHighWaterMark, 20)
        try socket.set(.heartbeatInterval, 1000)
        try socket.set(.heartbeatTimeout, 3000)
        try socket.set(.heartbeatTTL, 5000)
        try socket.set(.reconnectIntervalMax, 2000)
        XCTAssertEqual(try socket.get(.sendHighWaterMark), 10)
        XCTAssertEqual(try socket.get(.receiveHighWaterMark), 20)
        XCTAssertEqual(try socket.get(.heartbeatInterval), 1000)
        try socket.set(.routingID, [1, 2, 3])
        XCTAssertEqual(try socket.get(.routingID), [1, 2, 3])

        XCTAssertThrowsError(try socket.connect("nonsense://nowhere")) { error in
            guard let error = error as? ZMQError else { return XCTFail("\(error)") }
            XCTAssertTrue(error.description.contains("zmq_connect(nonsense://nowhere)"), error.description)
            XCTAssertFalse(error.message.isEmpty)
        }
        socket.close()
        XCTAssertThrowsError(try socket.bind("tcp://127.0.0.1:*")) { error in
            XCTAssertEqual((error as? ZMQError)?.isClosed, true)
        }
    }

    func testPollerReportsTheReadySocket() throws {
        let context = try Context()
        let (router, dealer, _) = try makeRouterDealer(context: context)
        let other = try Socket(context: context, type: .dealer)
        var poller = Poller()
        let otherIndex = poller.add(other)
        let routerIndex = poller.add(router)
        XCTAssertEqual(try poller.poll(timeoutMilliseconds: 50), 0, "nothing is ready yet")
        try dealer.send([Array("ping".utf8)])
        XCTAssertEqual(try poller.poll(timeoutMilliseconds: 2000), 1)
        XCTAssertTrue(poller.readyEvents(at: routerIndex).contains(.pollIn))
        XCTAssertFalse(poller.readyEvents(at: otherIndex).contains(.pollIn))
        XCTAssertEqual(try router.receive().last?.string, "ping")
    }
}
