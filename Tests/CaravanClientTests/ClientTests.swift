import CaravanClient
import CaravanCore
import CaravanWire
import Foundation
import Synchronization
import XCTest
import ZeroMQ

/// ``CaravanClient`` against a scripted coordinator (a ROUTER on loopback): what it sends is the
/// request it was given, what it hears becomes typed events, and a coordinator that sends what no
/// coordinator may (a bad job id, no finish reason) is a clear error, not a crash or a hang.
final class ClientTests: XCTestCase {
    /// Answers each request with the events `script` gives for it, and remembers the requests.
    final class ScriptedCoordinator: Sendable {
        typealias Script = @Sendable (Caravan_V1_Envelope.OneOf_Body) -> [Caravan_V1_Envelope.OneOf_Body]
        /// The requests heard, in order.
        final class Heard: Sendable {
            let bodies = Mutex<[Caravan_V1_Envelope.OneOf_Body]>([])
        }

        let loop: EventLoop
        let socket: AsyncSocket
        let endpoint: String
        let heard = Heard()
        let task: Task<Void, Never>

        init(script: @escaping Script) async throws {
            loop = try EventLoop(context: try Context(), name: "scripted-coordinator")
            let socket = try AsyncSocket(loop: loop, type: .router) { s in try s.bind("tcp://127.0.0.1:*") }
            self.socket = socket
            endpoint = try await socket.withSocket { s throws(ZMQError) in try s.lastEndpoint }
            task = Self.serve(socket, heard: heard, script: script)
        }

        var received: [Caravan_V1_Envelope.OneOf_Body] { heard.bodies.withLock { $0 } }

        private static func serve(_ socket: AsyncSocket, heard: Heard, script: @escaping Script) -> Task<Void, Never> {
            Task {
                let codec = WireCodec()
                do {
                    for try await frames in socket.messages() {
                        guard frames.count >= 2, case .message(let body, let requestID)? = try? codec.decode(Array(frames.dropFirst())) else { continue }
                        heard.bodies.withLock { $0.append(body) }
                        for reply in script(body) {
                            guard let out = try? codec.encode(reply, requestID: requestID) else { continue }
                            try? await socket.send([Message(frames[0].bytes)] + out, timeout: .seconds(2))
                        }
                    }
                } catch {}
            }
        }

        func stop() async {
            task.cancel()
            await socket.close()
            loop.shutdown()
        }
    }

    static func event(_ e: JobEvent, job: String, to body: Caravan_V1_Envelope.OneOf_Body) -> Caravan_V1_Envelope.OneOf_Body {
        guard case .jobSubmit(let submit) = body else { return .error(.with { $0.code = "unexpected"; $0.message = "" }) }
        var wire = Caravan_V1_JobEvent(e, job: JobID("job-1")!, clientRequestID: submit.clientRequestID, sequence: 1)
        wire.jobID = job
        return .jobEvent(wire)
    }

    func testRunSendsTheRequestAndHearsTypedEvents() async throws {
        let job = JobID.random()
        let events: [JobEvent] = [
            .accepted(job: job, promptTokens: 5, queuePosition: 0),
            .token(JobToken(id: 11, text: " Paris")),
            .finished(JobFinish(reason: .length, text: ".", promptTokens: 5, completionTokens: 1)),
        ]
        let coordinator = try await ScriptedCoordinator { body in events.map { Self.event($0, job: job.rawValue, to: body) } }
        let client = try CaravanClient(endpoint: coordinator.endpoint, serverKey: nil)
        let request = JobRequest(input: .chat([ChatTurn(role: "user", content: "Capital of France?")]), clientRequestID: "mine",
                                 sampling: SamplingParameters(temperature: 0, repeatLastN: 16, frequencyPenalty: 0.5, presencePenalty: -1),
                                 maxTokens: 1, seed: 9)
        var heard: [JobEvent] = []
        try await client.run(request, timeout: .seconds(10)) { heard.append($0) }
        XCTAssertEqual(heard, events)
        guard case .jobSubmit(let sent)? = coordinator.received.first else { return XCTFail("no submit") }
        XCTAssertEqual(try JobRequest(wire: sent), request, "the coordinator reads exactly the request")
        await coordinator.stop()
    }

    func testAHostileCoordinatorIsABadReply() async throws {
        let replies: [String: [JobEvent]] = [
            "bad-id": [.accepted(job: JobID("job-1")!, promptTokens: 1, queuePosition: 0)],
            "no-reason": [.finished(JobFinish(reason: .length))],
        ]
        let coordinator = try await ScriptedCoordinator { body in
            guard case .jobSubmit(let s) = body else { return [] }
            switch s.clientRequestID {
            case "bad-id":
                return [Self.event(replies["bad-id"]![0], job: "job-1\n[admin] ok", to: body)]
            case "no-reason":
                guard case .jobEvent(var e) = Self.event(replies["no-reason"]![0], job: "job-2", to: body) else { return [] }
                e.finished.reason = .unspecified
                return [.jobEvent(e)]
            default:
                return []
            }
        }
        let client = try CaravanClient(endpoint: coordinator.endpoint, serverKey: nil)
        for id in ["bad-id", "no-reason"] {
            do {
                try await client.run(JobRequest(input: .prompt("x"), clientRequestID: id), timeout: .seconds(10)) { _ in }
                XCTFail("\(id): accepted")
            } catch {
                guard case .badReply(let why) = error else { return XCTFail("\(id): \(error)") }
                XCTAssertTrue(why.contains("job_event"), why)
            }
        }
        await coordinator.stop()
    }

    func testStatusAndDrainAreTyped() async throws {
        let job = try XCTUnwrap(JobID("job-42"))
        let coordinator = try await ScriptedCoordinator { body in
            switch body {
            case .jobStatusRequest(let r) where r.jobID == "job-42":
                return [.jobStatus(Caravan_V1_JobStatus(JobStatus(job: job, state: .generating, promptTokens: 3, completionTokens: 2)))]
            case .jobStatusRequest:
                return [.error(.with { $0.code = "not_found"; $0.message = "no such job" })]
            case .drainRequest(let r):
                return [.adminResult(.with { $0.ok = r.workerID == "w2"; $0.message = "\(r.workerID) \(r.deadlineMs)" })]
            default:
                return []
            }
        }
        let client = try CaravanClient(endpoint: coordinator.endpoint, serverKey: nil)
        let s = try await client.status(job: job)
        XCTAssertEqual(s.state, .generating)
        XCTAssertEqual(s.completionTokens, 2)
        do {
            _ = try await client.status(job: try XCTUnwrap(JobID("job-43")))
            XCTFail("an unknown job has no status")
        } catch {
            XCTAssertEqual(error as? ClientError, .rejected(code: "not_found", message: "no such job"))
        }
        let drained = try await client.drain(worker: "w2", reason: "test", deadline: .seconds(3))
        XCTAssertEqual(drained, DrainAnswer(accepted: true, message: "w2 3000"))
        await coordinator.stop()
    }

    /// `clusterStatus` and `planPreview` speak CaravanCore's values, whatever the wire carries.
    func testAdminReportsAreTyped() async throws {
        let coordinator = try await ScriptedCoordinator { body in
            switch body {
            case .clusterStatusRequest(let r):
                var report = ConversionTests.report
                if !r.includeFinishedJobs { report.jobs = [] }
                return [.clusterStatus(Caravan_V1_ClusterStatus(report))]
            case .planPreviewRequest(let r):
                return [.planPreview(Caravan_V1_PlanPreview(PlanPreview(feasible: false, reason: "ctx \(r.maxContextTokens)")))]
            default:
                return []
            }
        }
        let client = try CaravanClient(endpoint: coordinator.endpoint, serverKey: nil)
        let all = try await client.clusterStatus(includeFinishedJobs: true)
        XCTAssertEqual(all, ConversionTests.report)
        let running = try await client.clusterStatus()
        XCTAssertEqual(running.jobs, [])
        let served = try await client.servedModel()
        XCTAssertEqual(served, ServedModel(name: "m.gguf", waitingReason: "re-planning"))
        let preview = try await client.planPreview(PlanPreviewRequest(maxContextTokens: 64))
        XCTAssertEqual(preview, PlanPreview(feasible: false, reason: "ctx 64"))
        await coordinator.stop()
    }
}
