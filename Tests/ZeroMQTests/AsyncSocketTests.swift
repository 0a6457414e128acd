import XCTest
@testable import ZeroMQ

final class AsyncSocketTests: XCTestCase {
    func testAsyncBridgeDeliversAndShutsDownCleanly() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context)
        let router = try AsyncSocket(loop: loop, type: .router)
        let endpoint = try await router.bind("tcp://127.0.0.1:*")
        let dealer = try AsyncSocket(loop: loop, type: .dealer) { socket in
            try socket.set(.routingID, "d1")
            try socket.connect(endpoint)
        }

        let count = 200
        let server = Task {
            var seen = 0
            for try await frames in router.messages() {
                XCTAssertEqual(frames[0].string, "d1")
                try await router.send([frames[0], frames[1]], timeout: .seconds(2))
                seen += 1
                if seen == count { break }
            }
            return seen
        }
        for i in 0..<count {
            try await dealer.send([Message("m\(i)")], timeout: .seconds(2))
        }
        for i in 0..<count {
            let reply = try await dealer.receive(timeout: .seconds(2))
            XCTAssertEqual(reply.map(\.string), ["m\(i)"])
        }
        let seen = try await server.value
        XCTAssertEqual(seen, count)

        // A receive waiting when the socket closes fails with "closed" instead of hanging.
        let pending = Task { try await dealer.receive(timeout: .seconds(5)) }
        try await Task.sleep(for: .milliseconds(50))
        await dealer.close()
        do {
            _ = try await pending.value
            XCTFail("receive on a closed socket returned")
        } catch {
            XCTAssertEqual((error as? ZMQError)?.isClosed, true, "\(error)")
        }
        do {
            try await dealer.send([Message("late")])
            XCTFail("send on a closed socket succeeded")
        } catch {
            XCTAssertEqual(error.isClosed, true)
        }

        let start = Date()
        loop.shutdown()
        XCTAssertFalse(loop.isRunning)
        context.terminate()
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "shutdown must not hang")
        do {
            _ = try await router.receive()
            XCTFail("receive after shutdown returned")
        } catch {
            XCTAssertTrue(error.isClosed)
        }
    }

    func testAsyncReceiveTimeoutAndCancellation() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context)
        defer { loop.shutdown() }
        let socket = try AsyncSocket(loop: loop, type: .dealer) { try $0.bind("tcp://127.0.0.1:*") }
        let start = ContinuousClock.now
        do {
            _ = try await socket.receive(timeout: .milliseconds(100))
            XCTFail("receive returned without a peer")
        } catch {
            XCTAssertTrue(error.isTimeout, "\(error)")
        }
        let elapsed = ContinuousClock.now - start
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(95))
        XCTAssertLessThan(elapsed, .seconds(1))

        let task = Task { try await socket.receive() }
        try await Task.sleep(for: .milliseconds(30))
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("cancelled receive returned")
        } catch {
            XCTAssertEqual((error as? ZMQError)?.isCancelled, true, "\(error)")
        }
    }

    func testMessagesStreamEndsWhenSocketCloses() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context)
        defer { loop.shutdown() }
        let socket = try AsyncSocket(loop: loop, type: .dealer)
        let consumer = Task {
            var n = 0
            for try await _ in socket.messages() { n += 1 }
            return n
        }
        try await Task.sleep(for: .milliseconds(30))
        await socket.close()
        let n = try await consumer.value
        XCTAssertEqual(n, 0)
    }

    func testLoopShutdownFailsWaitersAndRejectsNewSockets() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context)
        let socket = try AsyncSocket(loop: loop, type: .dealer)
        let waiting = Task { try await socket.receive() }
        try await Task.sleep(for: .milliseconds(30))
        loop.shutdown()
        do {
            _ = try await waiting.value
            XCTFail("receive survived the loop shutdown")
        } catch {
            XCTAssertEqual((error as? ZMQError)?.isClosed, true, "\(error)")
        }
        XCTAssertThrowsError(try AsyncSocket(loop: loop, type: .dealer))
        context.terminate()
    }
}
