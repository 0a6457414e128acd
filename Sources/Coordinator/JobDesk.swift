import CaravanCore
import CaravanWire
import ChatTemplate
import ClusterSupport
import Foundation
import Inference
import Logging
import Sampling
import Tokenizer
import ZeroMQ

/// The running pipeline jobs go to.
struct ServingPipeline: Sendable {
    let epoch: UInt64
    let engine: RemotePipelineEngine
    let lanes: [Lane]
}

/// One job's bookkeeping.
struct JobRecord: Sendable {
    let jobID: String
    let peer: PeerID
    let clientRequestID: String
    let sequence: SequenceID
    let epoch: UInt64
    var state: Caravan_V1_JobState
    let promptTokens: Int
    var completionTokens = 0
    let submittedMs: UInt64
    let started: ContinuousClock.Instant
    var firstToken: ContinuousClock.Instant?
    var eventSequence: UInt64 = 0
    var error: String?
    var lane: Int
}

/// The client side of the coordinator: takes `JobSubmit`, `JobStatusRequest` and `JobCancel` from
/// the client socket (ROUTER), turns prompts into sessions on the least-loaded lane, and streams
/// `JobEvent`s back to the submitting client.
final class JobDesk: Sendable {
    private let clients: AsyncSocket
    private let codec: WireCodec
    private let tokenizer: Tokenizer
    private let template: ChatTemplate?
    private let contextLimit: Int
    private let logger: Logger
    let serving = LockedValue<ServingPipeline?>(nil)
    private let unavailableReason = LockedValue<String>("the cluster is still starting (waiting for workers)")
    private let jobs = LockedValue<[String: JobRecord]>([:])
    private let admitting = LockedValue(true)
    /// Ended jobs, oldest first; only the last ``keptEndedJobs`` stay queryable.
    private let ended = LockedValue<[String]>([])
    private let keptEndedJobs = 1000
    private let bySequence = LockedValue<[SequenceID: String]>([:])
    private let counters = LockedValue<(job: UInt64, sequence: UInt64)>((0, 0))
    /// Answers `caravanctl` requests (status, plan preview); installed by the service.
    let admin = LockedValue<AdminDesk?>(nil)

    init(clients: AsyncSocket, codec: WireCodec, tokenizer: Tokenizer, template: ChatTemplate?, contextLimit: Int,
         logger: Logger) {
        self.clients = clients
        self.codec = codec
        self.tokenizer = tokenizer
        self.template = template
        self.contextLimit = contextLimit
        self.logger = logger
    }

    /// Refuses new jobs with `reason`; unless `keepServing`, running jobs lose the pipeline too.
    func setUnavailable(_ reason: String, keepServing: Bool = false) {
        unavailableReason.withLock { $0 = reason }
        if keepServing {
            admitting.withLock { $0 = false }
        } else {
            serving.withLock { $0 = nil }
        }
    }

    /// Stops serving the current pipeline (its jobs fail with `reason`) while a new plan is made.
    func stopServing(_ reason: String) async {
        unavailableReason.withLock { $0 = "re-planning: \(reason)" }
        guard let old = serving.withLock({ value -> ServingPipeline? in
            defer { value = nil }
            return value
        }) else { return }
        for lane in old.lanes { await lane.stop(reason) }
        old.engine.failAll(PipelineError.stageFailed(step: 0, message: reason))
    }

    /// Jobs still running.
    var activeJobs: Int { bySequence.withLock { $0.count } }

    /// For the admin desk: the known jobs, and why new jobs are refused (nil while serving).
    func adminSnapshot() -> (jobs: [JobRecord], unavailable: String?) {
        let open = admitting.withLock { $0 } && serving.withLock { $0 != nil }
        return (jobs.withLock { Array($0.values) }, open ? nil : unavailableReason.withLock { $0 })
    }

    /// Handles one message from the client socket (routing id first).
    func handle(_ frames: [Message]) async {
        guard frames.count >= 2 else { return }
        let peer = PeerID(frames[0].bytes)
        let body: Caravan_V1_Envelope.OneOf_Body
        let requestID: UInt64
        do {
            guard case .message(let b, let r) = try codec.decode(Array(frames.dropFirst())) else {
                logger.warning("client socket: dropped an unexpected data message")
                return
            }
            (body, requestID) = (b, r)
        } catch {
            logger.warning("client socket: dropped a bad frame", metadata: ["reason": "\(error)"])
            var reply = Caravan_V1_ErrorReply()
            reply.code = "invalid_message"
            reply.message = "\(error)"
            await send(.error(reply), to: peer)
            return
        }
        switch body {
        case .jobSubmit(let m): await submit(m, from: peer, requestID: requestID)
        case .jobStatusRequest(let m): await status(m.jobID, to: peer, requestID: requestID)
        case .jobCancel(let m): await cancel(m.jobID, from: peer, requestID: requestID)
        case .clusterStatusRequest, .planPreviewRequest:
            await send(admin.withLock { $0 }?.answer(body) ?? AdminDesk.notReady, to: peer, requestID: requestID)
        case .hello:
            var hello = Caravan_V1_Hello()
            hello.protocolVersion = WireProtocol.version
            hello.role = .coordinator
            hello.nodeID = "coordinator"
            await send(.hello(hello), to: peer, requestID: requestID)
        default:
            var reply = Caravan_V1_ErrorReply()
            reply.code = "unsupported"
            reply.message = "the client socket takes JobSubmit, JobStatusRequest and JobCancel"
            await send(.error(reply), to: peer, requestID: requestID)
        }
    }

    private func submit(_ m: Caravan_V1_JobSubmit, from peer: PeerID, requestID: UInt64) async {
        let (jobNumber, sequenceNumber) = counters.withLock { c -> (UInt64, UInt64) in
            c.job += 1
            c.sequence += 1
            return (c.job, c.sequence)
        }
        let jobID = "job-\(jobNumber)"
        func refuse(_ code: Caravan_V1_JobErrorCode, _ message: String) async {
            await send(JobMessages.event(jobID: jobID, clientRequestID: m.clientRequestID, sequence: 1,
                                         JobMessages.error(code, message)), to: peer, requestID: requestID)
        }
        guard admitting.withLock({ $0 }), let pipeline = serving.withLock({ $0 }) else {
            await refuse(.unavailable, unavailableReason.withLock { $0 })
            return
        }
        let prompt: [Int32]
        switch m.input {
        case .prompt(let text)?:
            prompt = tokenizer.encode(text, addSpecial: true, parseSpecial: true)
        case .chat(let chat)?:
            guard let template else {
                await refuse(.invalidRequest, "the model has no chat template")
                return
            }
            let bos = tokenizer.bosToken.map { String(decoding: tokenizer.piece($0), as: UTF8.self) } ?? ""
            let eos = tokenizer.eosToken.map { String(decoding: tokenizer.piece($0), as: UTF8.self) } ?? ""
            do {
                let rendered = try template.render(messages: chat.messages.map { ChatMessage(role: $0.role, content: $0.content) },
                                                   addGenerationPrompt: true, bosToken: bos, eosToken: eos)
                prompt = tokenizer.encode(rendered, addSpecial: !(!bos.isEmpty && rendered.hasPrefix(bos)), parseSpecial: true)
            } catch {
                await refuse(.invalidRequest, "chat template: \(error)")
                return
            }
        case .promptTokens(let t)?:
            guard let bad = t.ids.first(where: { $0 >= UInt32(tokenizer.vocabularySize) }) else {
                prompt = t.ids.map { Int32($0) }
                break
            }
            await refuse(.invalidRequest, "token id \(bad) is outside the vocabulary (\(tokenizer.vocabularySize))")
            return
        case nil:
            await refuse(.invalidRequest, "no input")
            return
        }
        let parameters = SamplingParameters(wire: m.sampling, contextLimit: contextLimit)
        let sequence = SequenceID(sequenceNumber)
        let session: GenerationSession
        do {
            try parameters.validate()
            session = try GenerationSession(sequence: sequence, prompt: prompt, parameters: parameters, tokenizer: tokenizer,
                                            contextLimit: contextLimit)
        } catch let error as GenerationError {
            if case .promptTooLong = error { await refuse(.contextOverflow, error.description) } else {
                await refuse(.invalidRequest, error.description)
            }
            return
        } catch {
            await refuse(.invalidRequest, "\(error)")
            return
        }
        var best = 0
        var bestLoad = Int.max
        for (i, lane) in pipeline.lanes.enumerated() {
            let load = await lane.load
            if load < bestLoad { (best, bestLoad) = (i, load) }
        }
        let record = JobRecord(jobID: jobID, peer: peer, clientRequestID: m.clientRequestID, sequence: sequence,
                               epoch: pipeline.epoch, state: .queued, promptTokens: prompt.count,
                               submittedMs: UInt64(Date().timeIntervalSince1970 * 1000), started: .now, lane: best)
        jobs.withLock { $0[jobID] = record }
        bySequence.withLock { $0[sequence] = jobID }
        var accepted = Caravan_V1_JobAccepted()
        accepted.promptTokens = UInt32(prompt.count)
        accepted.queuePosition = UInt32(bestLoad)
        await emit(jobID, .accepted(accepted))
        logger.info("job accepted", metadata: ["job": "\(jobID)", "prompt_tokens": "\(prompt.count)", "lane": "\(best)"])
        await pipeline.lanes[best].submit(session)
    }

    /// Receives a lane's event for `sequence`.
    func laneEvent(_ sequence: SequenceID, _ event: LaneEvent) async {
        guard let jobID = bySequence.withLock({ $0[sequence] }) else { return }
        switch event {
        case .generation(.token(let id, let text)):
            jobs.withLock { table in
                table[jobID]?.completionTokens += 1
                table[jobID]?.state = .generating
                if table[jobID]?.firstToken == nil { table[jobID]?.firstToken = .now }
            }
            var token = Caravan_V1_JobToken()
            token.tokenID = UInt32(bitPattern: id)
            token.text = text
            await emit(jobID, .token(token))
        case .generation(.finished(let reason, let text)):
            let record = jobs.withLock { table -> JobRecord? in
                table[jobID]?.state = reason == .cancelled ? .cancelled : .finished
                return table[jobID]
            }
            guard let record else { return }
            var finished = Caravan_V1_JobFinished()
            finished.reason = reason.wire
            finished.text = text
            finished.promptTokens = UInt32(record.promptTokens)
            finished.completionTokens = UInt32(record.completionTokens)
            finished.totalMs = UInt32(clamping: Self.milliseconds(ContinuousClock.now - record.started))
            if let first = record.firstToken {
                finished.timeToFirstTokenMs = UInt32(clamping: Self.milliseconds(first - record.started))
            }
            await emit(jobID, .finished(finished))
            bySequence.withLock { _ = $0.removeValue(forKey: sequence) }
            retire(jobID)
        case .failed(let message):
            jobs.withLock { table in
                table[jobID]?.state = .failed
                table[jobID]?.error = message
            }
            await emit(jobID, JobMessages.error(.internal, message))
            bySequence.withLock { _ = $0.removeValue(forKey: sequence) }
            retire(jobID)
        }
    }

    /// Keeps an ended job queryable until ``keptEndedJobs`` newer ones have ended.
    private func retire(_ jobID: String) {
        let dropped = ended.withLock { list -> [String] in
            list.append(jobID)
            guard list.count > keptEndedJobs else { return [] }
            let excess = Array(list.prefix(list.count - keptEndedJobs))
            list.removeFirst(excess.count)
            return excess
        }
        if !dropped.isEmpty { jobs.withLock { table in for id in dropped { table[id] = nil } } }
    }

    private func status(_ jobID: String, to peer: PeerID, requestID: UInt64) async {
        guard let record = jobs.withLock({ $0[jobID] }) else {
            var reply = Caravan_V1_ErrorReply()
            reply.code = "not_found"
            reply.message = "no job \(jobID)"
            await send(.error(reply), to: peer, requestID: requestID)
            return
        }
        var s = Caravan_V1_JobStatus()
        s.jobID = jobID
        s.state = record.state
        s.promptTokens = UInt32(record.promptTokens)
        s.completionTokens = UInt32(record.completionTokens)
        s.submittedUnixMs = record.submittedMs
        s.planEpoch = record.epoch
        if let error = record.error {
            s.error.code = .internal
            s.error.message = error
        }
        await send(.jobStatus(s), to: peer, requestID: requestID)
    }

    private func cancel(_ jobID: String, from peer: PeerID, requestID: UInt64) async {
        guard let record = jobs.withLock({ $0[jobID] }), let pipeline = serving.withLock({ $0 }),
              record.epoch == pipeline.epoch else {
            await status(jobID, to: peer, requestID: requestID)
            return
        }
        await pipeline.lanes[record.lane].cancel(record.sequence)
    }

    private func emit(_ jobID: String, _ event: Caravan_V1_JobEvent.OneOf_Event) async {
        guard let (peer, clientRequestID, number) = jobs.withLock({ table -> (PeerID, String, UInt64)? in
            guard table[jobID] != nil else { return nil }
            table[jobID]!.eventSequence += 1
            let r = table[jobID]!
            return (r.peer, r.clientRequestID, r.eventSequence)
        }) else { return }
        await send(JobMessages.event(jobID: jobID, clientRequestID: clientRequestID, sequence: number, event), to: peer)
    }

    private func send(_ body: Caravan_V1_Envelope.OneOf_Body, to peer: PeerID, requestID: UInt64 = 0) async {
        do {
            let frames = [Message(peer.bytes)] + (try codec.encode(body, requestID: requestID))
            try await clients.send(frames, timeout: .seconds(5))
        } catch {
            logger.warning("could not send to a client", metadata: ["reason": "\(error)"])
        }
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}
