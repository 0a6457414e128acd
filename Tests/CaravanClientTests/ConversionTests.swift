import CaravanCore
import CaravanWire
import XCTest

/// Job requests, events and statuses to protobuf and back: every field survives, and what does
/// not fit (or a hostile coordinator sends) is refused with a named field.
final class ConversionTests: XCTestCase {
    static let sampling = SamplingParameters(temperature: 0.7, topK: 12, topP: 0.9, minP: 0.02, repeatPenalty: 1.15,
                                             repeatLastN: -1, frequencyPenalty: -0.5, presencePenalty: 1.5,
                                             stop: ["\n\n", "END"])

    func testRequestsRoundTrip() throws {
        var withLogprobs = Self.sampling
        withLogprobs.logprobs = true
        withLogprobs.topLogprobs = 5
        let requests = [
            JobRequest(input: .prompt("The capital of France is"), clientRequestID: "r1", sampling: Self.sampling,
                       maxTokens: 16, seed: 0),
            JobRequest(input: .chat([ChatTurn(role: "system", content: "Be brief."), ChatTurn(role: "user", content: "Hi")]),
                       model: "smollm", sampling: withLogprobs, seed: .max),
            JobRequest(input: .tokens([1, 2, 3, Int32.max]), sampling: SamplingParameters(repeatLastN: 0), maxTokens: 1),
            JobRequest(input: .prompt("x")),
        ]
        for request in requests {
            let wire = try Caravan_V1_JobSubmit(request)
            // Through the bytes, as the coordinator receives it.
            let bytes = try wire.serializedData()
            XCTAssertEqual(try JobRequest(wire: try Caravan_V1_JobSubmit(serializedBytes: bytes)), request)
        }
    }

    func testEveryPenaltyIsOnTheWire() throws {
        let w = try Caravan_V1_JobSubmit(JobRequest(input: .prompt("x"), sampling: Self.sampling, maxTokens: 3)).sampling
        XCTAssertEqual(w.repetitionPenalty, 1.15)
        XCTAssertTrue(w.hasRepeatLastN)
        XCTAssertEqual(w.repeatLastN, -1)
        XCTAssertEqual(w.frequencyPenalty, -0.5)
        XCTAssertEqual(w.presencePenalty, 1.5)
        XCTAssertFalse(w.hasSeed, "no seed: the coordinator draws one")
        XCTAssertEqual(w.maxTokens, 3)
    }

    /// A submit from an older client (no window, no frequency or presence penalty, zeros for "off")
    /// reads as the defaults.
    func testOldSubmitsReadWithDefaults() throws {
        var old = Caravan_V1_JobSubmit()
        old.prompt = "x"
        old.sampling.temperature = 0
        let r = try JobRequest(wire: old)
        XCTAssertEqual(r.sampling.repeatLastN, 64)
        XCTAssertEqual(r.sampling.repeatPenalty, 1)
        XCTAssertEqual(r.sampling.topP, 1)
        XCTAssertEqual(r.sampling.frequencyPenalty, 0)
        XCTAssertEqual(r.sampling.presencePenalty, 0)
        XCTAssertNil(r.maxTokens, "0 = up to the context limit")
        XCTAssertNil(r.seed)
        XCTAssertNil(r.model)
    }

    func testValuesThatDoNotFitAreRefused() {
        func refused(_ request: JobRequest, _ field: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try Caravan_V1_JobSubmit(request), file: file, line: line) { error in
                guard case .invalidField(let name, _)? = error as? WireError else { return XCTFail("\(error)", file: file, line: line) }
                XCTAssertTrue(name.hasPrefix(field), name, file: file, line: line)
            }
        }
        refused(JobRequest(input: .prompt("x"), sampling: SamplingParameters(topK: -1)), "sampling.top_k")
        refused(JobRequest(input: .prompt("x"), maxTokens: 0), "sampling.max_tokens")
        refused(JobRequest(input: .prompt("x"), maxTokens: Int(UInt32.max) + 1), "sampling.max_tokens")
        refused(JobRequest(input: .tokens([5, -1])), "job_submit.prompt_tokens.ids[1]")
        var wire = Caravan_V1_JobSubmit()
        XCTAssertThrowsError(try JobRequest(wire: wire), "no input")
        wire.promptTokens = .with { $0.ids = [1, UInt32(Int32.max) + 1] }
        XCTAssertThrowsError(try JobRequest(wire: wire), "a token id past Int32")
    }

    func testEventsRoundTrip() throws {
        let job = try XCTUnwrap(JobID("job-0123456789abcdef0123456789abcdef"))
        let events: [JobEvent] = [
            .accepted(job: job, promptTokens: 7, queuePosition: 2),
            .token(JobToken(id: 42, text: " Paris")),
            .token(JobToken(id: 0, text: "", logprob: -0.25,
                            alternatives: [.init(id: 0, text: "a", logprob: -0.25), .init(id: 9, text: "b", logprob: -2)])),
            .finished(JobFinish(reason: .stopString, text: "tail", promptTokens: 7, completionTokens: 12,
                                timeToFirstToken: .milliseconds(35), total: .milliseconds(1200))),
            .failed(JobFailure(.contextOverflow, "the prompt has 300 tokens; the context holds 256")),
        ] + JobFinishReason.allCases.map { .finished(JobFinish(reason: $0)) }
          + JobFailureReason.allCases.map { .failed(JobFailure($0, "why")) }
        for (n, event) in events.enumerated() {
            let wire = Caravan_V1_JobEvent(event, job: job, clientRequestID: "c", sequence: UInt64(n))
            XCTAssertEqual(wire.jobID, job.rawValue)
            XCTAssertEqual(wire.sequence, UInt64(n))
            let decoded = try JobEvent(wire: try Caravan_V1_JobEvent(serializedBytes: try wire.serializedData()))
            XCTAssertEqual(decoded, event)
            XCTAssertEqual(decoded.isEnd, n >= 3)
        }
    }

    func testHostileEventsAreRefused() {
        var e = Caravan_V1_JobEvent()
        XCTAssertThrowsError(try JobEvent(wire: e), "no event")
        e.jobID = "job-1; DROP"
        e.accepted = Caravan_V1_JobAccepted()
        XCTAssertThrowsError(try JobEvent(wire: e), "a bad job id")
        e.token = .with { $0.tokenID = UInt32.max }
        XCTAssertThrowsError(try JobEvent(wire: e), "a token id past Int32")
        e.token = .with { $0.tokenID = 1; $0.topLogprobs = [.with { $0.tokenID = UInt32(Int32.max) + 1 }] }
        XCTAssertThrowsError(try JobEvent(wire: e), "an alternative past Int32")
        e.finished = .with { $0.reason = .unspecified }
        XCTAssertThrowsError(try JobEvent(wire: e), "no finish reason")
        e.finished = .with { $0.reason = .UNRECOGNIZED(99) }
        XCTAssertThrowsError(try JobEvent(wire: e), "an unknown finish reason")
        e.error = .with { $0.code = .UNRECOGNIZED(42); $0.message = "new kind" }
        XCTAssertEqual(try JobEvent(wire: e), .failed(JobFailure(.internal, "new kind")), "an unknown code keeps its message")
    }

    func testStatusRoundTrips() throws {
        let job = try XCTUnwrap(JobID("job-7"))
        let statuses = JobState.allCases.map { state in
            JobStatus(job: job, state: state, promptTokens: 5, completionTokens: 3, submittedUnixMs: 1_700_000_000_000,
                      planEpoch: 4, failure: state == .failed ? JobFailure(.workerLost, "w2 lost") : nil,
                      waitingReason: state == .queued ? "re-planning" : "", replays: 1, queuePosition: state == .queued ? 1 : 0)
        }
        for status in statuses {
            XCTAssertEqual(try JobStatus(wire: Caravan_V1_JobStatus(status)), status)
        }
        var bad = Caravan_V1_JobStatus(statuses[0])
        bad.state = .unspecified
        XCTAssertThrowsError(try JobStatus(wire: bad))
        bad = Caravan_V1_JobStatus(statuses[0])
        bad.jobID = "../job-7"
        XCTAssertThrowsError(try JobStatus(wire: bad))
    }

    static let report = ClusterReport(
        planEpoch: 3, model: ModelIdentity(name: "m.gguf", sha256: String(repeating: "a", count: 64), sizeBytes: 9, layerCount: 12),
        curveEnabled: true,
        workers: [
            WorkerReport(workerID: "w1", dataAddress: "tcp://a:1", state: .ready, health: .suspect, layers: LayerRange(0, 6),
                         stageIndex: 0, offeredMemoryBytes: 1 << 30, measuredGflops: 2.5, memoryUsedBytes: 5, memoryFreeBytes: 7,
                         lastHeartbeatAgeMs: 300, lastHeartbeatUnixMs: 1_700_000_000_000, heartbeatRttMs: 0.5, stepsRun: 40,
                         recentStepMs: 8, recentRowsPerStep: 2, tokensPerSecond: 250,
                         pull: PullProgress(layers: LayerRange(0, 6)!, totalBytes: 10, doneBytes: 4, bytesPerSecond: 2, etaSeconds: 3)),
            WorkerReport(workerID: "w2", state: .draining, health: .draining),
        ],
        lostWorkers: [WorkerReport(workerID: "w3", state: .lost, health: .lost, lastHeartbeatUnixMs: 5)],
        expectedWorkers: 2, jobs: [JobStatus(job: JobID("job-7")!, state: .queued, waitingReason: "no room", queuePosition: 1)],
        admissionQueued: 1, tokensPerSecond: 12.5, serving: false, waitingReason: "re-planning",
        planHistory: [PlanChange(epoch: 3, unixMs: 1_700_000_000_001, reason: "initial plan",
                                 stages: [StageReport(workerID: "w1", layers: LayerRange(0, 12)!, estimatedMemoryBytes: 99)], served: true)],
        nowUnixMs: 1_700_000_000_500, clientAccess: "lists", callerRoles: "admin")

    /// The admin reports survive the wire (and come back as what `caravanctl --json` prints); an
    /// unknown worker state reads as unknown, a report with a bad job is refused.
    func testAdminReportsRoundTrip() throws {
        let bytes = try Caravan_V1_ClusterStatus(Self.report).serializedData()
        XCTAssertEqual(try ClusterReport(wire: try Caravan_V1_ClusterStatus(serializedBytes: bytes)), Self.report)
        var odd = Caravan_V1_ClusterStatus(Self.report)
        odd.workers[0].state = .UNRECOGNIZED(42)
        odd.workers[0].health = .unspecified
        let read = try ClusterReport(wire: odd)
        XCTAssertEqual([read.workers[0].state], [.unknown])
        XCTAssertEqual([read.workers[0].health], [.unknown])
        odd.jobs[0].jobID = "not a job"
        XCTAssertThrowsError(try ClusterReport(wire: odd))

        let preview = PlanPreview(feasible: true, stages: [StageReport(workerID: "w1", layers: LayerRange(0, 4)!, estimatedMemoryBytes: 1,
                                                                       estimatedStepMs: 2.5, workerMemoryBytes: 3)],
                                  estimatedTokensPerSecond: 40, modelName: "m", maxContextTokens: 256, maxBatchSequences: 4)
        XCTAssertEqual(PlanPreview(wire: Caravan_V1_PlanPreview(preview)), preview)
        let shape = ModelShape(name: "s", layerBytes: [1, 2], embeddingBytes: 3, outputBytes: 4, kvBytesPerTokenPerLayer: 5,
                               embeddingLength: 6, vocabularySize: 7, layerMultiplyAdds: 8)
        let request = try Caravan_V1_PlanPreviewRequest(PlanPreviewRequest(shape: shape, excludedWorkers: ["w2"], maxContextTokens: 512))
        XCTAssertEqual(ModelShape(wire: request.shape), shape)
        XCTAssertEqual([request.maxContextTokens, request.maxBatchSequences], [512, 0], "unset: the coordinator's")
        XCTAssertEqual(request.excludeWorkerIds, ["w2"])
        XCTAssertThrowsError(try Caravan_V1_PlanPreviewRequest(PlanPreviewRequest(maxBatchSequences: 0)))
        XCTAssertThrowsError(try Caravan_V1_PlanPreviewRequest(PlanPreviewRequest(maxContextTokens: Int(UInt32.max) + 1)))
    }
}
