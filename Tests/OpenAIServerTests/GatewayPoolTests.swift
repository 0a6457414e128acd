import CaravanCore
import CaravanWire
import Foundation
@testable import OpenAIServer
import Synchronization
import XCTest
import ZeroMQ

/// ``ClusterGateway`` against a stand-in coordinator (a ROUTER on loopback that runs every job
/// for 200 ms): one bounded pool of connections, at most `maxConcurrentJobs` jobs at once (the
/// rest refused with 429 at once), connections reused.
final class GatewayPoolTests: XCTestCase {
    /// A coordinator that accepts every job, finishes it after `delay`, and remembers the routing
    /// ids (= connections) it heard from.
    final class FakeCoordinator: Sendable {
        /// Routing ids heard from.
        final class Peers: Sendable {
            let ids = Mutex<Set<[UInt8]>>([])
        }

        let loop: EventLoop
        let socket: AsyncSocket
        let endpoint: String
        let peers = Peers()
        /// Job ids it was asked to cancel.
        final class Cancels: Sendable {
            let ids = Mutex<[String]>([])
        }

        let cancels = Cancels()
        let task: Task<Void, Never>

        init(delay: Duration) async throws {
            loop = try EventLoop(context: try Context(), name: "fake-coordinator")
            let socket = try AsyncSocket(loop: loop, type: .router) { s in try s.bind("tcp://127.0.0.1:*") }
            self.socket = socket
            endpoint = try await socket.withSocket { s throws(ZMQError) in try s.lastEndpoint }
            task = Self.serve(socket, peers: peers, cancels: cancels, delay: delay)
        }

        private static func serve(_ socket: AsyncSocket, peers: Peers, cancels: Cancels, delay: Duration) -> Task<Void, Never> {
            Task {
                let codec = WireCodec()
                await withDiscardingTaskGroup { group in
                    do {
                        for try await frames in socket.messages() {
                            guard frames.count >= 2 else { continue }
                            let peer = frames[0].bytes
                            peers.ids.withLock { _ = $0.insert(peer) }
                            let decoded = try? codec.decode(Array(frames.dropFirst()))
                            if case .message(.jobCancel(let c), _)? = decoded { cancels.ids.withLock { $0.append(c.jobID) } }
                            guard case .message(.jobSubmit(let job), _)? = decoded else { continue }
                            group.addTask {
                                func event(_ e: Caravan_V1_JobEvent.OneOf_Event) async {
                                    var ev = Caravan_V1_JobEvent()
                                    ev.jobID = "job-" + job.clientRequestID
                                    ev.clientRequestID = job.clientRequestID
                                    ev.event = e
                                    guard let frames = try? codec.encode(.jobEvent(ev)) else { return }
                                    try? await socket.send([Message(peer)] + frames, timeout: .seconds(2))
                                }
                                await event(.accepted(.with { $0.promptTokens = 1 }))
                                try? await Task.sleep(for: delay)
                                await event(.finished(.with { $0.reason = .length; $0.completionTokens = 1; $0.text = "ok" }))
                            }
                        }
                    } catch {}
                }
            }
        }

        func stop() async {
            task.cancel()
            await socket.close()
            loop.shutdown()
        }
    }

    private static func job(_ id: String) -> JobRequest {
        JobRequest(input: .prompt("x"), clientRequestID: id)
    }

    /// Drains a job's pieces; returns nil when it finished, else the error.
    private static func outcome(_ gateway: ClusterGateway, _ id: String) async -> OpenAIError? {
        do {
            for try await _ in gateway.run(job(id)) {}
            return nil
        } catch let e as OpenAIError {
            return e
        } catch {
            return .internalError("\(error)")
        }
    }

    func testConcurrentJobsBeyondTheLimitGet429AndConnectionsArePooled() async throws {
        let coordinator = try await FakeCoordinator(delay: .milliseconds(400))
        let gateway = try ClusterGateway(endpoint: coordinator.endpoint, serverKey: nil, keys: nil, modelName: "m",
                                         timeout: .seconds(10), maxConcurrentJobs: 3)
        let results = await withTaskGroup(of: OpenAIError?.self) { group in
            for i in 0..<12 { group.addTask { await Self.outcome(gateway, "c\(i)") } }
            var all: [OpenAIError?] = []
            for await r in group { all.append(r) }
            return all
        }
        let finished = results.filter { $0 == nil }.count
        let refused = results.compactMap { $0 }.filter { $0.status == 429 }
        XCTAssertEqual(finished, 3, "\(results)")
        XCTAssertEqual(refused.count, 9, "\(results)")
        XCTAssertEqual(refused.first?.code, "rate_limit_exceeded")
        // One after another: the pooled connections are reused.
        for i in 0..<6 {
            let r = await Self.outcome(gateway, "s\(i)")
            XCTAssertNil(r)
        }
        XCTAssertEqual(gateway.usage.running, 0)
        XCTAssertLessThanOrEqual(gateway.usage.connections, 3)
        XCTAssertLessThanOrEqual(coordinator.peers.ids.withLock { $0.count }, 3, "a connection per request")
        await coordinator.stop()
    }

    /// A job whose events stop coming (the gateway's wait for the next one times out) is
    /// cancelled on the coordinator: the HTTP client got its error, and nobody could read the
    /// job's output, so it must not go on holding the coordinator's room and this server's job
    /// count. (Before, the gateway dropped the connection and the job ran on.)
    func testAJobTheGatewayGivesUpOnIsCancelledOnTheCoordinator() async throws {
        let coordinator = try await FakeCoordinator(delay: .seconds(30))
        let gateway = try ClusterGateway(endpoint: coordinator.endpoint, serverKey: nil, keys: nil, modelName: "m",
                                         timeout: .milliseconds(300), maxConcurrentJobs: 3)
        let outcome = await Self.outcome(gateway, "stuck")
        XCTAssertEqual(outcome?.status, 503, "\(String(describing: outcome))")
        let deadline = ContinuousClock.now + .seconds(5)
        while coordinator.cancels.ids.withLock({ $0.isEmpty }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTAssertEqual(coordinator.cancels.ids.withLock { $0 }, ["job-stuck"])
        XCTAssertEqual(gateway.usage.running, 0)
        await coordinator.stop()
    }
}
