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

    func testShutdownFromTheLoopThreadDoesNotDeadlock() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context)
        let socket = try AsyncSocket(loop: loop, type: .dealer)
        // The body runs on the loop thread; shutdown must notice and not wait for itself.
        try await socket.withSocket { _ in loop.shutdown() }
        XCTAssertFalse(loop.isRunning)
        do {
            _ = try await socket.receive(timeout: .seconds(2))
            XCTFail("receive after shutdown returned")
        } catch {
            XCTAssertTrue(error.isClosed, "\(error)")
        }
        loop.shutdown()  // joins the (ended) thread from outside
        context.terminate()
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

final class AsyncSocketFlowTests: XCTestCase {
    /// CPU time used by this process so far, seconds.
    private func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    func testWaitingDoesNotBusyLoop() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context)
        defer { loop.shutdown() }
        let socket = try AsyncSocket(loop: loop, type: .dealer) { try $0.bind("tcp://127.0.0.1:*") }
        let before = cpuSeconds()
        do {
            _ = try await socket.receive(timeout: .milliseconds(500))
            XCTFail("receive returned without a peer")
        } catch {
            XCTAssertTrue(error.isTimeout)
        }
        let used = cpuSeconds() - before
        XCTAssertLessThan(used, 0.1, "waiting 0.5 s used \(used) s of CPU: the loop is spinning")
    }

    func testSendWaitsAtHighWaterMarkThenTimesOut() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context)
        defer { loop.shutdown() }
        // A DEALER with no peer cannot queue anything: sends wait for a connection.
        let lonely = try AsyncSocket(loop: loop, type: .dealer) { try $0.set(.sendHighWaterMark, 1) }
        let start = ContinuousClock.now
        do {
            try await lonely.send([Message("nobody listens")], timeout: .milliseconds(150))
            XCTFail("send without a peer succeeded")
        } catch {
            XCTAssertTrue(error.isTimeout, "\(error)")
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(140))

        // Once a peer appears, a waiting send goes through.
        let receiver = try AsyncSocket(loop: loop, type: .router)
        let endpoint = try await receiver.bind("tcp://127.0.0.1:*")
        let sending = Task { try await lonely.send([Message("late hello")], timeout: .seconds(3)) }
        try await Task.sleep(for: .milliseconds(50))
        try await lonely.connect(endpoint)
        try await sending.value
        let frames = try await receiver.receive(timeout: .seconds(3))
        XCTAssertEqual(frames.last?.string, "late hello")
    }

    func testDealerReconnectsAfterServerRestart() throws {
        let context = try Context()
        let first = try Socket(context: context, type: .router)
        try first.bind("tcp://127.0.0.1:*")
        let endpoint = try first.lastEndpoint
        let dealer = try Socket(context: context, type: .dealer)
        try dealer.set(.reconnectInterval, 20)
        try dealer.set(.sendTimeout, 2000)
        try dealer.connect(endpoint)
        try first.set(.receiveTimeout, 2000)
        try dealer.send([Array("one".utf8)])
        XCTAssertEqual(try first.receive().last?.string, "one")
        first.close()

        let second = try Socket(context: context, type: .router)
        try second.set(.receiveTimeout, 200)
        // zmq_close releases the listening port asynchronously (on libzmq's I/O thread).
        XCTAssertTrue(eventually { (try? second.bind(endpoint)) != nil }, "could not rebind \(endpoint)")
        // A message sent before the dealer notices that its old connection died is lost (ZeroMQ
        // does not resend across reconnects), so send until the restarted server gets one.
        var received: String?
        for attempt in 0..<40 where received == nil {
            try dealer.send([Array("two-\(attempt)".utf8)])
            received = try? second.receive().last?.string
        }
        XCTAssertEqual(received?.hasPrefix("two-"), true, "the dealer never reached the restarted server")
    }

    func testConcurrentSendersAndReceiversLoseNothing() async throws {
        let context = try Context()
        let loop = try EventLoop(context: context)
        defer { loop.shutdown() }
        let router = try AsyncSocket(loop: loop, type: .router)
        let endpoint = try await router.bind("tcp://127.0.0.1:*")
        let dealer = try AsyncSocket(loop: loop, type: .dealer) { try $0.connect(endpoint) }
        let senders = 4, perSender = 50
        // Several tasks receive from the same socket while several others send into it.
        let received = Task {
            try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        var got: [String] = []
                        while true {
                            do throws(ZMQError) {
                                got.append(try await router.receive(timeout: .milliseconds(500))[1].string)
                            } catch {
                                if error.isTimeout { return got }
                                throw error
                            }
                        }
                    }
                }
                var all: [String] = []
                for try await part in group { all += part }
                return all
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for s in 0..<senders {
                group.addTask {
                    for i in 0..<perSender { try await dealer.send([Message("\(s)-\(i)")], timeout: .seconds(2)) }
                }
            }
            try await group.waitForAll()
        }
        let all = try await received.value
        XCTAssertEqual(all.count, senders * perSender)
        XCTAssertEqual(Set(all).count, senders * perSender, "duplicates delivered")
    }
}
