import CaravanCore
import CaravanTransport
import CaravanWire
import ChatTemplate
import ClusterSupport
import Foundation
import Inference
import Logging
import Metrics
import Sampling

import Tokenizer
import ZeroMQ

/// The running pipeline jobs go to.
struct ServingPipeline: Sendable {
    let epoch: UInt64
    let engine: RemotePipelineEngine
    let lanes: [Lane]
    /// The CURVE key of the worker running the last stage: results are taken from it only.
    var lastStageKey = ""
}

/// One job's bookkeeping. A job outlives pipelines: while no pipeline can take it (start-up,
/// re-plan, not enough workers) its session is parked here; on the next pipeline it is replayed.
struct JobRecord: Sendable {
    let jobID: String
    let clientRequestID: String
    let sequence: SequenceID
    let promptTokens: Int
    let submittedMs: UInt64
    /// The CURVE key of the client that submitted it ("" in plain mode): only that key (and
    /// admins) may read, cancel or attach to it.
    var owner = ""
    /// KV positions per stage the job reserves while it runs (``KVAdmission``).
    var kvCost = 0
    /// Where events go (nil after a coordinator restart until a client attaches).
    var peer: PeerID?
    var state: Caravan_V1_JobState
    /// The plan epoch of the pipeline running it (0 = never ran).
    var epoch: UInt64 = 0
    /// Generated token ids and the text streamed with each.
    var tokenIDs: [Int32] = []
    var texts: [String] = []
    let started: ContinuousClock.Instant
    var firstToken: ContinuousClock.Instant?
    /// When its latest token came (for the per-token latency metric).
    var lastToken: ContinuousClock.Instant?
    var eventSequence: UInt64 = 0
    var error: String?
    /// The lane running it, when running.
    var lane: Int?
    /// The session, while waiting for a pipeline.
    var parked: GenerationSession?
    /// The session, wherever it runs (for the logprobs it records).
    var session: GenerationSession?
    var waitingSince: ContinuousClock.Instant?
    var waitingReason = ""
    /// Times the job moved to a new pipeline after having started.
    var replays = 0
    /// Positions of its sequence every stage computed (as far as the desk saw results): what a
    /// re-plan lets the stages keep (``StageAssignment/continuing``).
    var committed = 0
    /// Pipeline failures since the job last generated a token.
    var failuresWithoutProgress = 0
    /// Since when the job has made no progress while pipelines failed or were replaced (nil while
    /// it generates); the queue timeout counts from here.
    var stalledSince: ContinuousClock.Instant?
    /// The final event (finished or error) once the job ended.
    var endEvent: Caravan_V1_JobEvent.OneOf_Event?

    var isEnded: Bool { endEvent != nil }
}

/// Timings and limits of the job desk.
struct JobDeskPolicy: Sendable {
    /// How long a job may wait for a pipeline before it fails.
    var queueTimeout: Duration
    /// Ended jobs kept for status and attach.
    var keptEndedJobs = 1000
    /// Unfinished jobs (running or waiting) held at most; more are refused until some end.
    var maxUnfinishedJobs = 4096
    /// Messages queued for clients at most: beyond half of it new jobs are refused, beyond all of
    /// it messages are dropped (counted and logged).
    var maxOutbox = 65_536
    /// Unfinished jobs one client key may hold (admins and plain mode: only the global limit).
    var maxJobsPerClient = 64
    /// Sequences per step the plan sizes KV caches for: with the context, the KV room jobs share.
    var batchSequences = 8
}

/// The client side of the coordinator: takes `JobSubmit`, `JobStatusRequest`, `JobCancel` and
/// `JobAttach` from the client socket (ROUTER), turns prompts into sessions on the least-loaded
/// lane, streams `JobEvent`s back, and keeps every unfinished job across pipelines: when a lane
/// hands a session back (re-plan, lost worker, failed step) the job waits, then replays on the
/// next pipeline. Every accepted job, token and end goes to the ``JobJournal``.
final class JobDesk: Sendable {
    private struct State: Sendable {
        var jobs: [String: JobRecord] = [:]
        var bySequence: [SequenceID: String] = [:]
        /// Ended jobs, oldest first.
        var ended: [String] = []
        var serving: ServingPipeline?
        var admitting = true
        var unavailableReason = "the cluster is starting (waiting for workers)"
        var faultReportedEpoch: UInt64 = 0
        var nextSequence: UInt64 = 0
        var admission: KVAdmission
    }

    private let clients: any Transport
    private let codec: WireCodec
    private let tokenizer: Tokenizer
    private let template: ChatTemplate?
    private let contextLimit: Int
    private let logger: Logger
    private let journal: any JobJournal
    private let policy: JobDeskPolicy
    /// Who may do what (nil in plain mode: everyone everything).
    private let access: AccessList?
    private let state: LockedValue<State>
    /// Everything sent to clients, in the order it was decided under the state lock (so that a
    /// re-attached client gets missed tokens and new ones in order, none twice).
    private let outbox: AsyncStream<(PeerID, Caravan_V1_Envelope.OneOf_Body, UInt64)>
    private let outboxInput: AsyncStream<(PeerID, Caravan_V1_Envelope.OneOf_Body, UInt64)>.Continuation
    /// Messages in the outbox now, and dropped because it was full.
    private let outboxDepth = LockedValue<(queued: Int, dropped: Int)>((0, 0))
    /// Called once per pipeline epoch whose step failed while it still serves (forces a re-plan).
    let pipelineFault = LockedValue<(@Sendable (UInt64, String) async -> Void)?>(nil)
    /// Answers `caravanctl` requests (status, plan preview); installed by the service.
    let admin = LockedValue<AdminDesk?>(nil)
    /// Answers `DrainRequest`s; installed by the service.
    let drainHandler = LockedValue<(@Sendable (Caravan_V1_DrainRequest) async -> Caravan_V1_AdminResult)?>(nil)

    init(clients: any Transport, codec: WireCodec, tokenizer: Tokenizer, template: ChatTemplate?, contextLimit: Int,
         logger: Logger, journal: any JobJournal, policy: JobDeskPolicy, access: AccessList? = nil) {
        self.access = access
        self.clients = clients
        self.codec = codec
        self.tokenizer = tokenizer
        self.template = template
        self.contextLimit = contextLimit
        self.logger = logger
        self.journal = journal
        self.policy = policy
        state = LockedValue(State(admission: KVAdmission(contextTokens: contextLimit, batchSequences: policy.batchSequences)))
        (outbox, outboxInput) = AsyncStream.makeStream()
    }

    /// Sends what the desk queued for clients, until the stream ends (``finish()``).
    func runOutbox() async {
        for await (peer, body, requestID) in outbox {
            outboxDepth.withLock { $0.queued -= 1 }
            do {
                let frames: [Message]
                do {
                    frames = try codec.encode(body, requestID: requestID)
                } catch {
                    // A reply that cannot be encoded (too large, invalid) must not leave its client
                    // waiting: it gets an error reply instead.
                    logger.error("could not encode a reply to a client", metadata: ["reason": "\(error)"])
                    var reply = Caravan_V1_ErrorReply()
                    reply.code = "internal"
                    reply.message = "the coordinator could not encode its reply: \(error)"
                    frames = try codec.encode(.error(reply), requestID: requestID)
                }
                try await clients.send(frames, to: peer.bytes, timeout: .seconds(5))
            } catch {
                logger.warning("could not send to a client", metadata: ["reason": "\(error)"])
            }
        }
    }

    /// Queues a message for a client; drops it (counted, logged) when the outbox is full.
    private func enqueue(_ peer: PeerID, _ body: Caravan_V1_Envelope.OneOf_Body, _ requestID: UInt64) {
        let dropped = outboxDepth.withLock { d -> Int? in
            guard d.queued < policy.maxOutbox else {
                d.dropped += 1
                return d.dropped
            }
            d.queued += 1
            return nil
        }
        if let dropped {
            if dropped == 1 || dropped % 1000 == 0 {
                logger.error("the client outbox is full; dropped a message", metadata: [
                    "limit": "\(policy.maxOutbox)", "dropped": "\(dropped)"])
            }
            return
        }
        outboxInput.yield((peer, body, requestID))
    }

    /// Ends the outbox once everything queued is sent.
    func finish() { outboxInput.finish() }

    // MARK: Pipelines

    /// The pipeline serving now.
    var serving: ServingPipeline? { state.withLock { $0.serving } }

    /// A pipeline is ready: waiting jobs move onto it (replaying what they had). Returns false
    /// (and serves nothing) when `stillCurrent` says the plan was replaced meanwhile; checked
    /// under the desk's lock so that a concurrent ``stopServing(_:)`` cannot be missed.
    func startServing(_ pipeline: ServingPipeline, stillCurrent: () -> Bool) async -> Bool {
        guard let waiting = state.withLock({ s -> [String]? in
            guard stillCurrent() else { return nil }
            s.serving = pipeline
            return s.jobs.values.filter { $0.parked != nil }.sorted { $0.sequence < $1.sequence }.map(\.jobID)
        }) else { return false }
        for jobID in waiting { await dispatch(jobID) }
        return true
    }

    /// Stops serving the current pipeline: its lanes hand their sessions back and the jobs wait
    /// (with `reason`) for the next one.
    func stopServing(_ reason: String) async {
        guard let old = state.withLock({ s -> ServingPipeline? in
            s.unavailableReason = reason
            defer { s.serving = nil }
            return s.serving
        }) else { return }
        for lane in old.lanes { await lane.stop(reason) }
        old.engine.failAll(PipelineError.stageFailed(step: 0, message: reason))
    }

    /// Why jobs wait now (no pipeline).
    func setWaiting(_ reason: String) {
        state.withLock { s in
            s.unavailableReason = reason
            for id in s.jobs.keys where s.jobs[id]?.parked != nil { s.jobs[id]?.waitingReason = reason }
        }
    }

    /// Refuses new jobs from now on (graceful shutdown); running ones continue.
    func stopAdmitting(_ reason: String) {
        state.withLock { s in
            s.admitting = false
            s.unavailableReason = reason
        }
    }

    /// Jobs not ended yet (running or waiting).
    var activeJobs: Int { state.withLock { $0.bySequence.count } }

    /// The sequences of unfinished jobs whose positions every stage computed, with that count
    /// (for a re-plan's assignments: what the stages may keep), at most `limit` of them (the
    /// longest first).
    func continuingSequences(limit: Int) -> [SequenceID: Int] {
        state.withLock { s in
            let running = s.bySequence.compactMap { id, job in s.jobs[job].flatMap { $0.committed > 0 ? (id, $0.committed) : nil } }
            return Dictionary(uniqueKeysWithValues: running.sorted { $0.1 > $1.1 }.prefix(limit).map { $0 })
        }
    }

    /// Every remembered job, when jobs cannot run now why, and the jobs waiting for KV room with
    /// their positions (for `caravanctl status`).
    func adminSnapshot() -> (jobs: [JobRecord], unavailable: String?, queued: [String: Int]) {
        state.withLock { s in
            let queued = Dictionary(s.admission.queue.enumerated().map { ($1.job, $0 + 1) }, uniquingKeysWith: { a, _ in a })
            return (Array(s.jobs.values), s.admitting && s.serving != nil ? nil : s.unavailableReason, queued)
        }
    }

    /// KV positions per stage reserved by running jobs, and the budget (for tests and logs).
    var kvRoom: (inUse: Int, budget: Int) { state.withLock { ($0.admission.inUse, $0.admission.budget) } }

    /// Jobs waiting for a pipeline, and the reason given.
    var waiting: (count: Int, reason: String) {
        state.withLock { s in (s.jobs.values.filter { $0.parked != nil }.count, s.unavailableReason) }
    }

    /// A snapshot of every remembered job (for status).
    var records: [JobRecord] { state.withLock { Array($0.jobs.values) } }

    // MARK: Restart

    /// Rebuilds the jobs of a previous run from the journal: unfinished ones wait for the first
    /// pipeline and resume where they stopped; ended ones stay queryable. Returns the highest plan
    /// epoch recorded. Compacts the journal.
    func restore() throws(JournalError) -> UInt64 {
        let entries = try journal.load()
        var submissions: [String: JournalSubmission] = [:]
        var order: [String] = []
        var tokens: [String: [(Int32, String)]] = [:]
        var ends: [String: (String, String, String)] = [:]
        var epoch: UInt64 = 0
        for e in entries {
            switch e {
            case .submitted(let s):
                submissions[s.job] = s
                order.append(s.job)
            case let .token(job, id, text): tokens[job, default: []].append((id, text))
            case let .ended(job, st, reason, text): ends[job] = (st, reason, text)
            case .epoch(let n): epoch = max(epoch, n)
            }
        }
        var restored = 0
        var kept: [JournalEntry] = [.epoch(epoch)]
        let endedOrder = order.filter { ends[$0] != nil }.suffix(policy.keptEndedJobs)
        let keepEnded = Set(endedOrder)
        state.withLock { s in
            for jobID in order {
                guard let sub = submissions[jobID] else { continue }
                s.nextSequence = max(s.nextSequence, sub.sequence)
                let generated = tokens[jobID] ?? []
                var record = JobRecord(jobID: jobID, clientRequestID: sub.clientRequestID, sequence: SequenceID(sub.sequence),
                                       promptTokens: sub.prompt.count, submittedMs: sub.submittedMs, peer: nil,
                                       state: generated.isEmpty ? .queued : .generating, started: .now)
                record.owner = sub.owner ?? ""
                record.tokenIDs = generated.map(\.0)
                record.texts = generated.map(\.1)
                if let (st, reason, text) = ends[jobID] {
                    guard keepEnded.contains(jobID) else { continue }
                    record.state = st == "finished" ? .finished : st == "cancelled" ? .cancelled : .failed
                    if record.state == .failed {
                        record.error = reason
                        record.endEvent = JobMessages.error(.internal, reason)
                    } else {
                        record.endEvent = JobMessages.finished(
                            Caravan_V1_FinishReason(rawValue: Int(reason) ?? 0) ?? .unspecified, text: text,
                            promptTokens: record.promptTokens, completionTokens: record.tokenIDs.count)
                    }
                    s.jobs[jobID] = record
                    s.ended.append(jobID)
                } else {
                    guard let session = Self.session(sub, generated: record.tokenIDs, tokenizer: tokenizer,
                                                     contextLimit: contextLimit) else { continue }
                    record.parked = session
                    record.session = session
                    record.kvCost = s.admission.cost(promptTokens: sub.prompt.count, maxNewTokens: session.parameters.maxTokens)
                    record.waitingSince = .now
                    record.waitingReason = "the coordinator restarted; waiting for the pipeline"
                    s.jobs[jobID] = record
                    s.bySequence[record.sequence] = jobID
                    restored += 1
                }
                kept.append(.submitted(sub))
                kept += generated.map { .token(job: jobID, id: $0.0, text: $0.1) }
                if let (st, reason, text) = ends[jobID] { kept.append(.ended(job: jobID, state: st, reason: reason, text: text)) }
            }
        }
        try journal.rewrite(kept)
        if restored > 0 { logger.info("restored unfinished jobs from the journal", metadata: ["jobs": "\(restored)"]) }
        return epoch
    }

    private static func session(_ sub: JournalSubmission, generated: [Int32], tokenizer: Tokenizer,
                                contextLimit: Int) -> GenerationSession? {
        guard let wire = try? Caravan_V1_SamplingParameters(jsonString: sub.sampling) else { return nil }
        let parameters = SamplingParameters(wire: wire, contextLimit: contextLimit)
        guard let session = try? GenerationSession(sequence: SequenceID(sub.sequence), prompt: sub.prompt,
                                                   parameters: parameters, tokenizer: tokenizer,
                                                   contextLimit: contextLimit) else { return nil }
        session.restore(generated: generated)
        return session
    }

    /// Records that a plan epoch was used.
    func recordEpoch(_ epoch: UInt64) { journal.append(.epoch(epoch)) }

    // MARK: Client socket

    /// Handles one message from the client link.
    func handle(_ message: Delivery) async {
        let peer = PeerID(message.sender ?? [])
        let body: Caravan_V1_Envelope.OneOf_Body
        let requestID: UInt64
        do {
            guard case .message(let b, let r) = try codec.decode(message.frames) else {
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
        // Roles per message (docs/protocol.md): ZAP admits only client and admin keys here; a
        // client touches its own jobs only (another's are "not found"), admins everything.
        let caller = AccessList.caller(identity: message.identity, access: access)
        guard !caller.roles.intersection([.client, .admin]).isEmpty else {
            logger.warning("client socket: refused a message from a key that is neither client nor admin",
                           metadata: ["key": "\(caller.key)", "roles": "\(caller.roles)"])
            await send(AdminDesk.forbidden("this key is not a client's (authorized_clients) or an admin's (authorized_admins)"),
                       to: peer, requestID: requestID)
            return
        }
        switch body {
        case .jobSubmit(let m): await submit(m, from: peer, caller: caller, requestID: requestID)
        case .jobStatusRequest(let m): await status(m.jobID, to: peer, caller: caller, requestID: requestID)
        case .jobCancel(let m): await cancel(m.jobID, from: peer, caller: caller, requestID: requestID)
        case .jobAttach(let m): await attach(m, from: peer, caller: caller, requestID: requestID)
        case .clusterStatusRequest, .planPreviewRequest:
            await send(admin.withLock { $0 }?.answer(body, caller: caller) ?? AdminDesk.notReady, to: peer, requestID: requestID)
        case .drainRequest where !caller.roles.contains(.admin):
            logger.warning("client socket: refused a drain request from a key that is not an admin's", metadata: ["key": "\(caller.key)"])
            await send(AdminDesk.forbidden("draining a worker is for admin keys only (authorized_admins)"), to: peer, requestID: requestID)
        case .drainRequest(let m):
            if let handler = drainHandler.withLock({ $0 }) {
                await send(.adminResult(await handler(m)), to: peer, requestID: requestID)
            } else {
                await send(AdminDesk.notReady, to: peer, requestID: requestID)
            }
        case .hello:
            var hello = Caravan_V1_Hello()
            hello.protocolVersion = WireProtocol.version
            hello.role = .coordinator
            hello.nodeID = "coordinator"
            await send(.hello(hello), to: peer, requestID: requestID)
        default:
            var reply = Caravan_V1_ErrorReply()
            reply.code = "unsupported"
            reply.message = "the client socket takes JobSubmit, JobStatusRequest, JobCancel, JobAttach and admin requests"
            await send(.error(reply), to: peer, requestID: requestID)
        }
    }

    private func submit(_ m: Caravan_V1_JobSubmit, from peer: PeerID, caller: Caller, requestID: UInt64) async {
        let (sequenceNumber, admitting, reason, unfinished, own) = state.withLock { s -> (UInt64, Bool, String, Int, Int) in
            s.nextSequence += 1
            // Counted only for keys the limit applies to (the job table holds at most a few thousand).
            let own = caller.roles.contains(.admin) || caller.key.isEmpty
                ? 0 : s.bySequence.values.count { s.jobs[$0]?.owner == caller.key }
            return (s.nextSequence, s.admitting, s.unavailableReason, s.bySequence.count, own)
        }
        let jobID = Self.newJobID()
        func refuse(_ code: Caravan_V1_JobErrorCode, _ message: String) async {
            await send(JobMessages.event(jobID: jobID, clientRequestID: m.clientRequestID, sequence: 1,
                                         JobMessages.error(code, message)), to: peer, requestID: requestID)
        }
        guard admitting else {
            await refuse(.unavailable, reason)
            return
        }
        guard unfinished < policy.maxUnfinishedJobs else {
            await refuse(.unavailable, "the coordinator holds its limit of \(policy.maxUnfinishedJobs) unfinished jobs; try again when some have ended")
            return
        }
        guard own < policy.maxJobsPerClient else {
            await refuse(.tooManyJobs, "this client holds its limit of \(policy.maxJobsPerClient) running and queued jobs; try again when some have ended")
            return
        }
        guard outboxDepth.withLock({ $0.queued }) < policy.maxOutbox / 2 else {
            await refuse(.unavailable, "the coordinator cannot send to its clients fast enough now; try again later")
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
        // Resolve the seed now: a replayed or restored job must draw exactly the same numbers.
        var sampling = m.sampling
        if !sampling.hasSeed { sampling.seed = UInt64.random(in: 0...UInt64.max) }
        let parameters = SamplingParameters(wire: sampling, contextLimit: contextLimit)
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
        let submittedMs = UInt64(Date().timeIntervalSince1970 * 1000)
        journal.append(.submitted(JournalSubmission(
            job: jobID, sequence: sequenceNumber, clientRequestID: m.clientRequestID, prompt: prompt,
            sampling: (try? sampling.jsonString()) ?? "{}", submittedMs: submittedMs, owner: caller.key.isEmpty ? nil : caller.key)))
        let queued = state.withLock { s -> Int in
            var record = JobRecord(jobID: jobID, clientRequestID: m.clientRequestID, sequence: sequence,
                                   promptTokens: prompt.count, submittedMs: submittedMs, peer: peer, state: .queued,
                                   started: .now)
            record.owner = caller.key
            record.kvCost = s.admission.cost(promptTokens: prompt.count, maxNewTokens: parameters.maxTokens)
            record.parked = session
            record.session = session
            record.waitingSince = .now
            record.waitingReason = s.serving == nil ? s.unavailableReason : ""
            s.jobs[jobID] = record
            s.bySequence[sequence] = jobID
            return s.bySequence.count - 1
        }
        var accepted = Caravan_V1_JobAccepted()
        accepted.promptTokens = UInt32(prompt.count)
        accepted.queuePosition = UInt32(queued)
        await emit(jobID, .accepted(accepted))
        logger.info("job accepted", metadata: ["job": "\(jobID)", "prompt_tokens": "\(prompt.count)"])
        CoordinatorMetrics.jobsSubmitted.increment()
        await dispatch(jobID)
    }

    /// Moves a parked job onto the serving pipeline's least-loaded lane (replaying it if it had
    /// run before); leaves it parked when no pipeline serves, or while the stages have no KV room
    /// for it (``KVAdmission``: it waits its turn; one that can never fit fails).
    private func dispatch(_ jobID: String) async {
        guard let pipeline = serving else { return }
        let decision = state.withLock { s -> KVAdmission.Decision? in
            guard let r = s.jobs[jobID], r.parked != nil, !r.isEnded else { return nil }
            let decision = s.admission.request(jobID, cost: r.kvCost)
            if case .queued(let position) = decision {
                s.jobs[jobID]?.waitingReason = "waiting for KV room on the stages (\(s.admission.inUse) of \(s.admission.budget) positions in use; position \(position) when queued)"
            }
            return decision
        }
        switch decision {
        case nil, .queued?: return
        case .refused(let reason)?:
            await end(jobID, state: .failed, event: JobMessages.error(.contextOverflow, reason))
            return
        case .start?: break
        }
        var best = 0
        var bestLoad = Int.max
        for (i, lane) in pipeline.lanes.enumerated() {
            let load = await lane.load
            if load < bestLoad { (best, bestLoad) = (i, load) }
        }
        guard let session = state.withLock({ s -> GenerationSession? in
            guard s.serving?.epoch == pipeline.epoch, let session = s.jobs[jobID]?.parked else { return nil }
            if let previous = s.jobs[jobID]?.epoch, previous != 0, session.processed > 0 || previous != pipeline.epoch {
                s.jobs[jobID]?.replays += 1
            }
            s.jobs[jobID]?.parked = nil
            s.jobs[jobID]?.waitingSince = nil
            s.jobs[jobID]?.waitingReason = ""
            s.jobs[jobID]?.epoch = pipeline.epoch
            s.jobs[jobID]?.lane = best
            if s.jobs[jobID]?.state == .queued { s.jobs[jobID]?.state = .prefill }
            return session
        }) else { return }
        session.rewind()
        await pipeline.lanes[best].submit(session)
    }

    /// Receives a lane's event for `sequence`.
    func laneEvent(_ sequence: SequenceID, _ event: LaneEvent) async {
        guard let jobID = state.withLock({ $0.bySequence[sequence] }) else { return }
        switch event {
        case .generation(.token(let id, let text)):
            journal.append(.token(job: jobID, id: id, text: text))
            var token = Caravan_V1_JobToken()
            token.tokenID = UInt32(bitPattern: id)
            token.text = text
            state.withLock { s in
                // The lane awaits this call before its next step, so the session is not changing.
                if let record = s.jobs[jobID], let session = record.session,
                   record.tokenIDs.count < session.logprobs.count, !session.logprobs[record.tokenIDs.count].logprob.isNaN {
                    let lp = session.logprobs[record.tokenIDs.count]
                    token.logprob = lp.logprob
                    token.topLogprobs = lp.top.map { alt in
                        var a = Caravan_V1_JobTokenAlternative()
                        a.tokenID = UInt32(bitPattern: alt.id)
                        a.text = String(decoding: tokenizer.piece(alt.id), as: UTF8.self)
                        a.logprob = alt.logprob
                        return a
                    }
                }
                s.jobs[jobID]?.tokenIDs.append(id)
                s.jobs[jobID]?.texts.append(text)
                if let record = s.jobs[jobID], let processed = record.session?.processed {
                    s.jobs[jobID]?.committed = max(record.committed, processed)
                }
                s.jobs[jobID]?.state = .generating
                s.jobs[jobID]?.failuresWithoutProgress = 0
                s.jobs[jobID]?.stalledSince = nil
                let now = ContinuousClock.now
                if let record = s.jobs[jobID] {
                    if let last = record.lastToken {
                        CoordinatorMetrics.tokenLatency.record(duration: now - last)
                    } else if record.tokenIDs.count == 1 {  // the first token (not a job restored from the journal)
                        CoordinatorMetrics.timeToFirstToken.record(duration: now - record.started)
                        CoordinatorMetrics.promptTokens.increment(by: record.promptTokens)
                    }
                }
                CoordinatorMetrics.tokensGenerated.increment()
                s.jobs[jobID]?.lastToken = now
                if s.jobs[jobID]?.firstToken == nil { s.jobs[jobID]?.firstToken = now }
                emit(jobID, .token(token), in: &s)
            }
        case .generation(.finished(let reason, let text)):
            guard let record = state.withLock({ $0.jobs[jobID] }) else { return }
            let firstTokenMs = record.firstToken.map { UInt32(clamping: Self.milliseconds($0 - record.started)) } ?? 0
            let event = JobMessages.finished(
                reason.wire, text: text, promptTokens: record.promptTokens, completionTokens: record.tokenIDs.count,
                totalMs: UInt32(clamping: Self.milliseconds(ContinuousClock.now - record.started)), timeToFirstTokenMs: firstTokenMs)
            await end(jobID, state: reason == .cancelled ? .cancelled : .finished, event: event)
        case let .handedBack(session, reason):
            await handBack(jobID, session: session, reason: reason)
        }
    }

    private func handBack(_ jobID: String, session: GenerationSession, reason: String) async {
        enum Next { case dispatch, fault(UInt64), wait }
        let next = state.withLock { s -> Next in
            guard var record = s.jobs[jobID], !record.isEnded else { return .wait }
            record.lane = nil
            record.parked = session
            record.committed = max(record.committed, session.processed)
            record.waitingSince = .now
            record.waitingReason = reason
            record.failuresWithoutProgress += 1
            if record.stalledSince == nil { record.stalledSince = .now }
            let epoch = record.epoch
            s.jobs[jobID] = record
            guard let serving = s.serving else { return .wait }
            if serving.epoch != epoch { return .dispatch }
            // The pipeline the job ran on still serves but a step failed: it needs a re-plan.
            guard s.faultReportedEpoch != epoch else { return .wait }
            s.faultReportedEpoch = epoch
            return .fault(epoch)
        }
        logger.info("job waits for a pipeline", metadata: ["job": "\(jobID)", "reason": "\(reason)",
                                                             "generated": "\(session.generatedCount)"])
        switch next {
        case .dispatch: await dispatch(jobID)
        case .wait: break
        case .fault(let epoch):
            if let handler = pipelineFault.withLock({ $0 }) { await handler(epoch, reason) }
        }
    }

    /// Fails jobs that waited for a pipeline, or made no progress across failing pipelines, for
    /// longer than the queue timeout; compacts the journal when it has grown enough.
    func sweep() async {
        do {
            if let kept = try journal.compactIfNeeded(keepEnded: policy.keptEndedJobs) {
                logger.info("compacted the job journal", metadata: ["entries": "\(kept)"])
            }
        } catch {
            logger.error("cannot compact the job journal", metadata: ["reason": "\(error)"])
        }
        let limit = policy.queueTimeout
        let expired = state.withLock { s -> [(String, String, Lane?, SequenceID)] in
            s.jobs.values.compactMap { r in
                // A job that keeps moving between failing pipelines without a new token stalls too.
                guard !r.isEnded, let since = r.parked != nil ? (r.stalledSince ?? r.waitingSince) : r.stalledSince,
                      ContinuousClock.now - since > limit else { return nil }
                var lane: Lane?
                if let i = r.lane, let p = s.serving, p.epoch == r.epoch, i < p.lanes.count { lane = p.lanes[i] }
                return (r.jobID, r.waitingReason.isEmpty ? s.unavailableReason : r.waitingReason, lane, r.sequence)
            }
        }
        for (jobID, reason, lane, sequence) in expired where state.withLock({ $0.admission.position(of: jobID) == nil }) {
            logger.warning("job waited too long for a pipeline", metadata: ["job": "\(jobID)", "reason": "\(reason)"])
            await end(jobID, state: .failed, event: JobMessages.error(
                .unavailable, "no pipeline could run the job within \(Self.seconds(limit)) s: \(reason)"))
            if let lane { await lane.cancel(sequence) }
        }
    }

    private func end(_ jobID: String, state newState: Caravan_V1_JobState, event: Caravan_V1_JobEvent.OneOf_Event) async {
        var admitted: [String] = []
        let ended = state.withLock { s -> Bool in
            guard var record = s.jobs[jobID], !record.isEnded else { return false }
            // Its KV room goes to the jobs waiting for it.
            admitted = s.admission.release(jobID)
            record.state = newState
            record.endEvent = event
            record.parked = nil
            record.session = nil
            record.lane = nil
            if case .error(let e) = event { record.error = e.message }
            s.jobs[jobID] = record
            s.bySequence[record.sequence] = nil
            s.ended.append(jobID)
            emit(jobID, event, in: &s)
            if s.ended.count > policy.keptEndedJobs {
                let excess = Array(s.ended.prefix(s.ended.count - policy.keptEndedJobs))
                s.ended.removeFirst(excess.count)
                for id in excess { s.jobs[id] = nil }
            }
            return true
        }
        for next in admitted { await dispatch(next) }
        guard ended else { return }
        CoordinatorMetrics.jobEnded(newState == .cancelled ? "cancelled" : newState == .failed ? "failed" : "finished")
        switch event {
        case .finished(let f):
            journal.append(.ended(job: jobID, state: newState == .cancelled ? "cancelled" : "finished",
                                  reason: "\(f.reason.rawValue)", text: f.text))
        case .error(let e):
            journal.append(.ended(job: jobID, state: "failed", reason: e.message, text: ""))
        default: break
        }
    }

    private func status(_ jobID: String, to peer: PeerID, caller: Caller, requestID: UInt64) async {
        guard let (record, reason) = state.withLock({ s in s.jobs[jobID].map { ($0, s.unavailableReason) } }),
              caller.mayTouch(jobOwnedBy: record.owner) else {
            await notFound(jobID, to: peer, requestID: requestID)
            return
        }
        var s = Self.wireStatus(record)
        if record.parked != nil, s.waitingReason.isEmpty { s.waitingReason = reason }
        s.queuePosition = UInt32(clamping: state.withLock { $0.admission.position(of: jobID) } ?? 0)
        await send(.jobStatus(s), to: peer, requestID: requestID)
    }

    /// The wire status of a job.
    static func wireStatus(_ record: JobRecord) -> Caravan_V1_JobStatus {
        var s = Caravan_V1_JobStatus()
        s.jobID = record.jobID
        s.state = record.parked != nil && !record.isEnded ? .queued : record.state
        s.promptTokens = UInt32(record.promptTokens)
        s.completionTokens = UInt32(record.tokenIDs.count)
        s.submittedUnixMs = record.submittedMs
        s.planEpoch = record.epoch
        s.replays = UInt32(record.replays)
        if record.parked != nil { s.waitingReason = record.waitingReason }
        if let error = record.error {
            s.error.code = .internal
            s.error.message = error
        }
        return s
    }

    private func notFound(_ jobID: String, to peer: PeerID, requestID: UInt64) async {
        var reply = Caravan_V1_ErrorReply()
        reply.code = "not_found"
        reply.message = "no job \(jobID)"
        await send(.error(reply), to: peer, requestID: requestID)
    }

    private func cancel(_ jobID: String, from peer: PeerID, caller: Caller, requestID: UInt64) async {
        enum Where { case lane(Lane, SequenceID), parked(GenerationSession), none, notYours }
        let target = state.withLock { s -> Where in
            guard let r = s.jobs[jobID] else { return .none }
            guard caller.mayTouch(jobOwnedBy: r.owner) else { return .notYours }
            guard !r.isEnded else { return .none }
            // Taken out of the job under the lock: a concurrent dispatch (a new pipeline, a hand
            // back) can no longer put the same session on a lane while it is being cancelled.
            if let session = r.parked {
                s.jobs[jobID]?.parked = nil
                return .parked(session)
            }
            if let lane = r.lane, let pipeline = s.serving, pipeline.epoch == r.epoch, lane < pipeline.lanes.count {
                return .lane(pipeline.lanes[lane], r.sequence)
            }
            return .none
        }
        switch target {
        case let .lane(lane, sequence):
            if await lane.cancel(sequence) { return }
            // Handed back meanwhile: it is parked now (or already dispatched again, then cancel
            // it where it runs now).
            if let session = claimParked(jobID) {
                await cancelParked(jobID, session)
            } else if let (lane, sequence) = state.withLock({ s -> (Lane, SequenceID)? in
                guard let r = s.jobs[jobID], !r.isEnded, let i = r.lane, let p = s.serving, p.epoch == r.epoch,
                      i < p.lanes.count else { return nil }
                return (p.lanes[i], r.sequence)
            }) {
                _ = await lane.cancel(sequence)
            }
        case .parked(let session):
            await cancelParked(jobID, session)
        case .notYours:
            logger.warning("a client asked to cancel a job it does not own", metadata: ["job": "\(jobID)", "key": "\(caller.key)"])
            await notFound(jobID, to: peer, requestID: requestID)
        case .none:
            guard state.withLock({ $0.jobs[jobID] }) != nil else {
                await notFound(jobID, to: peer, requestID: requestID)
                return
            }
            await status(jobID, to: peer, caller: caller, requestID: requestID)
        }
    }

    /// Takes a parked job's session out of the job (under the lock), so that nothing else
    /// dispatches it meanwhile.
    private func claimParked(_ jobID: String) -> GenerationSession? {
        state.withLock { s in
            guard let session = s.jobs[jobID]?.parked, s.jobs[jobID]?.isEnded == false else { return nil }
            s.jobs[jobID]?.parked = nil
            return session
        }
    }

    /// Ends a job whose session the caller claimed (``claimParked(_:)``): no lane holds it.
    private func cancelParked(_ jobID: String, _ session: GenerationSession) async {
        let event: GenerationEvent
        if case .finished(let reason, let text)? = session.cancel() {
            event = .finished(reason: reason, text: text)
        } else {
            // It had finished already: end the job as cancelled all the same.
            event = .finished(reason: .cancelled, text: "")
        }
        await laneEvent(session.sequence, .generation(event))
    }

    /// A client (re-)attaches to a job: it receives the events it missed (tokens from
    /// `received_tokens` on, and the end if the job ended), then the rest of the stream.
    private func attach(_ m: Caravan_V1_JobAttach, from peer: PeerID, caller: Caller, requestID: UInt64) async {
        let found = state.withLock { s -> Bool in
            guard let record = s.jobs[m.jobID], caller.mayTouch(jobOwnedBy: record.owner) else { return false }
            s.jobs[m.jobID]?.peer = peer
            var accepted = Caravan_V1_JobAccepted()
            accepted.promptTokens = UInt32(record.promptTokens)
            emit(m.jobID, .accepted(accepted), in: &s)
            for i in min(Int(m.receivedTokens), record.tokenIDs.count)..<record.tokenIDs.count {
                var token = Caravan_V1_JobToken()
                token.tokenID = UInt32(bitPattern: record.tokenIDs[i])
                token.text = record.texts[i]
                emit(m.jobID, .token(token), in: &s)
            }
            if let end = record.endEvent { emit(m.jobID, end, in: &s) }
            return true
        }
        guard found else {
            await notFound(m.jobID, to: peer, requestID: requestID)
            return
        }
        logger.info("client attached", metadata: ["job": "\(m.jobID)", "received_tokens": "\(m.receivedTokens)"])
    }

    private func emit(_ jobID: String, _ event: Caravan_V1_JobEvent.OneOf_Event) async {
        state.withLock { s in emit(jobID, event, in: &s) }
    }

    /// Queues `event` for the job's client, numbered, while the caller holds the state lock.
    private func emit(_ jobID: String, _ event: Caravan_V1_JobEvent.OneOf_Event, in s: inout State) {
        guard let r = s.jobs[jobID], let peer = r.peer else { return }
        s.jobs[jobID]?.eventSequence += 1
        enqueue(peer, JobMessages.event(jobID: jobID, clientRequestID: r.clientRequestID, sequence: r.eventSequence + 1, event), 0)
    }

    private func send(_ body: Caravan_V1_Envelope.OneOf_Body, to peer: PeerID, requestID: UInt64 = 0) async {
        enqueue(peer, body, requestID)
    }

    /// A job id no client can guess (`job-` and 128 random bits in hex, from the system's
    /// cryptographic generator): the id is what status, cancel and attach requests name, so
    /// sequential ids let anyone reach every job.
    static func newJobID() -> String { JobID.random().rawValue }

    static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
