import CaravanCore
import CaravanTransport
import ChatTemplate
import Foundation
import Inference
import Logging
import Metrics
import Tokenizer

/// The running pipeline jobs go to.
struct ServingPipeline: Sendable {
    let epoch: UInt64
    let engine: RemotePipelineEngine
    let lanes: [Lane]
    /// The CURVE key of the worker running the last stage: results are taken from it only.
    var lastStageKey = ""
    /// Sequences that continue from the previous plan at the position every stage holds
    /// (``ResumePoints``), each taken by its first dispatch.
    var resume = LockedValue<[SequenceID: Int]>([:])
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

/// Runs the coordinator's jobs: admits them (``JobAdmission``), keeps them in the ``JobTable``,
/// moves their sessions onto the least-loaded lane of the serving pipeline, hands what lanes report
/// to the table, and keeps every unfinished job across pipelines: when a lane hands a session back
/// (re-plan, lost worker, failed step) the job waits, then replays on the next pipeline. Every
/// accepted job, token and end goes to the ``JobJournal``; every event for a client to the
/// ``ClientOutbox``, in the order the table decided it. Speaks CaravanCore's job values: the
/// ``ClientEndpoint`` converts them at the wire.
final class JobDesk: Sendable {
    private struct State: Sendable {
        var table: JobTable
        /// The pipeline serving now (its epoch is the table's ``JobTable/servingEpoch``).
        var serving: ServingPipeline?
    }

    private let admission: JobAdmission
    private let tokenizer: Tokenizer
    private let contextLimit: Int
    private let logger: Logger
    /// Lines a peer can cause, within a budget (``LogLimiter``).
    private let limited: LogLimiter
    /// Lines per job a client causes (accepted, attached), within a larger budget.
    private let perJob: LogLimiter
    private let journal: any JobJournal
    private let policy: JobDeskPolicy
    private let outbox: ClientOutbox
    private let state: LockedValue<State>
    /// One fault per pipeline epoch whose step failed while it still serves (the control plane
    /// follows them and re-plans).
    let pipelineFaults: AsyncStream<PipelineFault>
    private let faultSink: AsyncStream<PipelineFault>.Continuation

    /// A desk for a model's `tokenizer` and chat `template`, with sequences of `contextLimit`
    /// positions, sending client events to `outbox`.
    init(tokenizer: Tokenizer, template: ChatTemplate?, contextLimit: Int, logger: Logger, journal: any JobJournal,
         policy: JobDeskPolicy, outbox: ClientOutbox) {
        self.tokenizer = tokenizer
        self.contextLimit = contextLimit
        self.logger = logger
        self.limited = LogLimiter(logger: logger)
        // One line per job is the point of these; the budget only stops a client that submits
        // (or attaches) and cancels in a loop from flooding the log.
        self.perJob = LogLimiter(logger: logger, budget: LogBudget(burst: 100, categoryBurst: 1000))
        self.journal = journal
        self.policy = policy
        self.outbox = outbox
        (pipelineFaults, faultSink) = AsyncStream.makeStream(of: PipelineFault.self)
        admission = JobAdmission(tokenizer: tokenizer, template: template, contextLimit: contextLimit, limits: .init(
            maxUnfinishedJobs: policy.maxUnfinishedJobs, maxJobsPerClient: policy.maxJobsPerClient, maxOutbox: policy.maxOutbox))
        state = LockedValue(State(table: JobTable(contextTokens: contextLimit, batchSequences: policy.batchSequences,
                                                  keptEndedJobs: policy.keptEndedJobs)))
    }

    /// Runs `body` on the state under the lock, then queues the events the table decided, still
    /// under the lock (so that events of concurrent calls reach the outbox in the table's order).
    private func withState<T>(_ body: (inout State) -> T) -> T {
        state.withLock { s in
            let result = body(&s)
            outbox.enqueue(s.table.takeEvents())
            return result
        }
    }

    // MARK: Pipelines

    /// The pipeline serving now.
    var serving: ServingPipeline? { state.withLock { $0.serving } }

    /// A pipeline is ready: waiting jobs move onto it (replaying what they had). Returns false
    /// (and serves nothing) when `stillCurrent` says the plan was replaced meanwhile; checked
    /// under the desk's lock so that a concurrent ``stopServing(_:)`` cannot be missed.
    func startServing(_ pipeline: ServingPipeline, stillCurrent: () -> Bool) async -> Bool {
        guard let waiting = withState({ s -> [JobID]? in
            guard stillCurrent() else { return nil }
            s.serving = pipeline
            return s.table.serve(epoch: pipeline.epoch)
        }) else { return false }
        for jobID in waiting { await dispatch(jobID) }
        return true
    }

    /// Stops serving the current pipeline: its lanes hand their sessions back and the jobs wait
    /// (with `reason`) for the next one.
    func stopServing(_ reason: String) async {
        guard let old = withState({ s -> ServingPipeline? in
            s.table.stopServing(reason)
            defer { s.serving = nil }
            return s.serving
        }) else { return }
        for lane in old.lanes { await lane.stop(reason) }
        old.engine.failAll(PipelineError.stageFailed(step: 0, message: reason))
    }

    /// Why jobs wait now (no pipeline).
    func setWaiting(_ reason: String) { withState { $0.table.setWaiting(reason) } }

    /// Refuses new jobs from now on (graceful shutdown); running ones continue.
    func stopAdmitting(_ reason: String) { withState { $0.table.stopAdmitting(reason) } }

    /// Jobs not ended yet (running or waiting).
    var activeJobs: Int { state.withLock { $0.table.bySequence.count } }

    /// The sequences of unfinished jobs whose positions every stage computed, with that count
    /// (for a re-plan's assignments: what the stages may keep), at most `limit` of them (the
    /// longest first).
    func continuingSequences(limit: Int) -> [SequenceID: Int] {
        state.withLock { $0.table.continuingSequences(limit: limit) }
    }

    /// Every remembered job, when jobs cannot run now why, and the jobs waiting for KV room with
    /// their positions (for `caravanctl status`).
    func adminSnapshot() -> (jobs: [JobRecord], unavailable: String?, queued: [JobID: Int]) {
        state.withLock { s in (Array(s.table.jobs.values), s.table.unavailable, s.table.roomQueue) }
    }

    /// KV positions per stage reserved by running jobs, and the budget (for tests and logs).
    var kvRoom: (inUse: Int, budget: Int) { state.withLock { ($0.table.admission.inUse, $0.table.admission.budget) } }

    /// Jobs waiting for a pipeline, and the reason given.
    var waiting: (count: Int, reason: String) { state.withLock { ($0.table.parkedCount, $0.table.unavailableReason) } }

    /// A snapshot of every remembered job (for status).
    var records: [JobRecord] { state.withLock { Array($0.table.jobs.values) } }

    // MARK: Restart

    /// Rebuilds the jobs of a previous run from the journal: unfinished ones wait for the first
    /// pipeline and resume where they stopped; ended ones stay queryable. Returns the highest plan
    /// epoch recorded. Compacts the journal.
    func restore() throws(JournalError) -> UInt64 {
        let entries = try journal.load()
        let restored = withState { s in
            s.table.restore(entries, now: .now) { submission, generated in session(submission, generated: generated) }
        }
        try journal.rewrite(restored.kept)
        if restored.unfinished > 0 {
            logger.info("restored unfinished jobs from the journal", metadata: ["jobs": "\(restored.unfinished)"])
        }
        return restored.epoch
    }

    /// The session of a journalled job that generated `generated` so far (nil when it can no
    /// longer run here, e.g. its prompt no longer fits the context).
    private func session(_ submission: JournalSubmission, generated: [Int32]) -> GenerationSession? {
        guard let session = try? GenerationSession(sequence: submission.sequence, prompt: submission.prompt,
                                                   parameters: submission.parameters(contextLimit: contextLimit),
                                                   tokenizer: tokenizer, contextLimit: contextLimit) else { return nil }
        session.restore(generated: generated)
        return session
    }

    /// Records that a plan epoch was used.
    func recordEpoch(_ epoch: UInt64) { journal.append(.epoch(epoch)) }

    // MARK: Client requests

    /// What became of a submission.
    enum Submitted: Equatable {
        /// Accepted as `JobID` (its client gets the accepted event and the rest of the stream).
        case accepted(JobID)
        /// Refused: the job (never entered in the table) and why, for its client.
        case refused(JobID, JobFailure)
    }

    /// Takes a job from `caller` on link `peer`: admits it (``JobAdmission``), journals it, queues
    /// it and moves it onto a lane when one can take it.
    func submit(_ request: JobRequest, from peer: PeerID, caller: Caller) async -> Submitted {
        // Counted only for keys the limit applies to (the job table holds at most a few thousand).
        let limited = !(caller.roles.contains(.admin) || caller.key.isEmpty)
        let intake = withState { $0.table.intake(countingJobsOf: limited ? caller.key : nil) }
        let jobID = JobID.random()
        let load = JobAdmission.Load(admitting: intake.admitting, unavailableReason: intake.unavailableReason,
                                     unfinished: intake.unfinished, ownUnfinished: intake.ownUnfinished, outboxQueued: outbox.queued)
        let admitted: JobAdmission.Admitted
        switch admission.admit(request, sequence: intake.sequence, load: load, drawSeed: { UInt64.random(in: 0...UInt64.max) }) {
        case .success(let a): admitted = a
        case .failure(let refusal): return .refused(jobID, refusal.failure)
        }
        let submittedMs = UInt64(Date().timeIntervalSince1970 * 1000)
        journal.append(.submitted(JournalSubmission(
            job: jobID, sequence: intake.sequence, clientRequestID: request.clientRequestID, prompt: admitted.prompt,
            sampling: request.sampling, maxTokens: request.maxTokens, seed: admitted.seed, submittedMs: submittedMs,
            owner: caller.key.isEmpty ? nil : caller.key)))
        _ = withState { s in
            s.table.accept(jobID, clientRequestID: request.clientRequestID, session: admitted.session,
                           promptTokens: admitted.prompt.count, submittedMs: submittedMs, owner: caller.key, peer: peer, now: .now)
        }
        perJob.info("job accepted", key: caller.key, metadata: ["job": "\(jobID)", "prompt_tokens": "\(admitted.prompt.count)"])
        CoordinatorMetrics.jobsSubmitted.increment()
        await dispatch(jobID)
        return .accepted(jobID)
    }

    /// A job's status, for a caller that may see it (nil: unknown, or another key's).
    func status(of jobID: JobID, caller: Caller) -> JobStatus? {
        state.withLock { $0.table.status(of: jobID, mayTouch: caller.mayTouch(jobOwnedBy:)) }
    }

    /// What a cancel request got.
    enum CancelAnswer: Equatable {
        /// The job is being cancelled: its stream ends with a cancelled finish.
        case cancelling
        /// No such job for this caller.
        case notFound
        /// Nothing to cancel (it ended); its status.
        case status(JobStatus)
    }

    /// Cancels a job for a caller that may touch it, wherever it is: on a lane, parked, or on its
    /// way between the two. The request is recorded in the job under the lock first (``JobTable/
    /// cancelTarget(_:mayTouch:)``), so that whoever holds the session next ends the job: a lane
    /// (cancelled here), the desk when a lane hands the session back (``handBack(_:session:reason:)``)
    /// or when it has just put it on a lane (``dispatch(_:)``). A parked session is claimed under
    /// the same lock: no dispatch can put it on a lane any more.
    func cancel(_ jobID: JobID, caller: Caller) async -> CancelAnswer {
        enum Where { case lane(Lane, SequenceID), parked(GenerationSession), pending, nothing, notYours }
        let target = withState { s -> Where in
            switch s.table.cancelTarget(jobID, mayTouch: caller.mayTouch(jobOwnedBy:)) {
            case .parked(let session): return .parked(session)
            case let .lane(i, sequence):
                guard let pipeline = s.serving, i < pipeline.lanes.count else { return .pending }
                return .lane(pipeline.lanes[i], sequence)
            case .pending: return .pending
            case .nothing: return .nothing
            case .notYours: return .notYours
            }
        }
        switch target {
        case let .lane(lane, sequence):
            // False when the lane let go of it meanwhile: then it finished, or its hand back (or
            // the dispatch that moves it on) sees the recorded cancel.
            await lane.cancel(sequence)
            return .cancelling
        case .parked(let session):
            await cancelParked(jobID, session)
            return .cancelling
        case .pending:
            return .cancelling
        case .notYours:
            limited.warning("a client asked to cancel a job it does not own", key: caller.key,
                            metadata: ["job": "\(jobID)", "key": "\(caller.key)"])
            return .notFound
        case .nothing:
            return status(of: jobID, caller: caller).map { .status($0) } ?? .notFound
        }
    }

    /// Ends a job whose session the caller claimed (``JobTable/claimParked(_:)``): no lane holds it.
    private func cancelParked(_ jobID: JobID, _ session: GenerationSession) async {
        let event: GenerationEvent
        if case .finished(let reason, let text)? = session.cancel() {
            event = .finished(reason: reason, text: text)
        } else {
            // It had finished already: end the job as cancelled all the same.
            event = .finished(reason: .cancelled, text: "")
        }
        await laneEvent(session.sequence, .generation(event))
    }

    /// A client (re-)attaches to a job from link `peer`: it receives the events it missed (tokens
    /// from `receivedTokens` on, and the end if the job ended), then the rest of the stream. False
    /// when the caller may not see such a job.
    func attach(_ jobID: JobID, receivedTokens: Int, peer: PeerID, caller: Caller) -> Bool {
        let found = withState { $0.table.attach(jobID, peer: peer, receivedTokens: receivedTokens, mayTouch: caller.mayTouch(jobOwnedBy:)) }
        if found { perJob.info("client attached", key: caller.key, metadata: ["job": "\(jobID)", "received_tokens": "\(receivedTokens)"]) }
        return found
    }

    // MARK: Lanes

    /// Moves a parked job onto the serving pipeline's least-loaded lane (replaying it if it had
    /// run before); leaves it parked when no pipeline serves, or while the stages have no KV room
    /// for it (``KVAdmission``: it waits its turn; one that can never fit fails).
    private func dispatch(_ jobID: JobID) async {
        guard let pipeline = serving else { return }
        let decision = withState { $0.table.requestRoom(jobID) }
        switch decision {
        case nil, .queued?: return
        case .refused(let reason)?:
            await end(jobID, with: .failed(JobFailure(.contextOverflow, reason)))
            return
        case .start?: break
        }
        var best = 0
        var bestLoad = Int.max
        for (i, lane) in pipeline.lanes.enumerated() {
            let load = await lane.load
            if load < bestLoad { (best, bestLoad) = (i, load) }
        }
        guard let session = withState({ $0.table.moveToLane(jobID, epoch: pipeline.epoch, lane: best) }) else { return }
        // From where every stage holds it (first dispatch after a re-plan), else from position 0.
        session.rewind(to: pipeline.resume.withLock { $0.removeValue(forKey: session.sequence) } ?? 0)
        await pipeline.lanes[best].submit(session)
        // Cancelled or ended (timed out) while the session was on its way to the lane: whoever did
        // it found no lane holding it yet, so take it off here (the lane's cancelled finish then
        // ends the job, or frees the room of the ended one).
        if state.withLock({ $0.table.mustLeaveLane(jobID) }) { await pipeline.lanes[best].cancel(session.sequence) }
    }

    /// Receives a lane's event for `sequence`.
    func laneEvent(_ sequence: SequenceID, _ event: LaneEvent) async {
        switch event {
        case .generation(.finished), .handedBack:
            // The lane let go of the sequence: an ended job that still held its room frees it. A
            // lane that hands a session back has not released it on the stages (its step failed
            // or it stopped): if that pipeline still serves, the desk does.
            if let released = withState({ $0.table.laneReleased(sequence) }) {
                if case .handedBack = event, let p = serving, p.epoch == released.epoch { await p.engine.release(sequence) }
                for next in released.admitted { await dispatch(next) }
            }
        case .generation(.token): break
        }
        guard let jobID = state.withLock({ $0.table.job(of: sequence) }) else { return }
        switch event {
        case .generation(.token(let id, let text)):
            // The lane awaits this call before its next step, so the session is not changing. A
            // job that ended meanwhile (timed out) records and sends nothing more.
            let timing = withState { s in
                s.table.recordToken(jobID, token: id, text: text, now: .now) { String(decoding: tokenizer.piece($0), as: UTF8.self) }
            }
            if timing != nil { journal.append(.token(job: jobID, id: id, text: text)) }
            switch timing {
            case .next(let latency)?: CoordinatorMetrics.tokenLatency.record(duration: latency)
            case let .first(latency, promptTokens)?:
                CoordinatorMetrics.timeToFirstToken.record(duration: latency)
                CoordinatorMetrics.promptTokens.increment(by: promptTokens)
            case .resumed?, nil: break
            }
            if timing != nil { CoordinatorMetrics.tokensGenerated.increment() }
        case .generation(.finished(let reason, let text)):
            guard let event = state.withLock({ $0.table.finish(jobID, reason: reason, text: text, now: .now) }) else { return }
            await end(jobID, with: event)
        case let .handedBack(session, reason):
            await handBack(jobID, session: session, reason: reason)
        }
    }

    private func handBack(_ jobID: JobID, session: GenerationSession, reason: String) async {
        let next = withState { $0.table.handBack(jobID, session: session, reason: reason, now: .now) }
        logger.info("job waits for a pipeline", metadata: ["job": "\(jobID)", "reason": "\(reason)",
                                                             "generated": "\(session.generatedCount)"])
        switch next {
        case .dispatch: await dispatch(jobID)
        case .cancel: await cancelParked(jobID, session)
        case .wait: break
        case .fault(let epoch):
            reportPipelineFault(PipelineFault(epoch: epoch, reason: reason))
        }
    }

    /// Tells the control plane that a step of `fault.epoch` failed while it served.
    func reportPipelineFault(_ fault: PipelineFault) {
        faultSink.yield(fault)
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
        let expired = state.withLock { s in
            s.table.expired(after: limit, now: .now).map { e -> (JobTable.Expired, Lane?) in
                guard let i = e.lane, let p = s.serving, i < p.lanes.count else { return (e, nil) }
                return (e, p.lanes[i])
            }
        }
        for (e, lane) in expired where !state.withLock({ $0.table.isWaitingForRoom(e.job) }) {
            logger.warning("job waited too long for a pipeline", metadata: ["job": "\(e.job)", "reason": "\(e.reason)"])
            // A job on a lane keeps its KV room until the lane has released its sequence on the
            // stages (its cancelled finish, or its hand back, frees it): the room never goes to
            // another job while the stages may still hold this one.
            await end(e.job, with: .failed(JobFailure(
                .unavailable, "no pipeline could run the job within \(Self.seconds(limit)) s: \(e.reason)")), whileOnLane: true)
            if let lane { await lane.cancel(e.sequence) }
        }
    }

    /// Ends a job with `event` (``JobTable/end(_:with:)``), starts the jobs its KV room admits,
    /// and records the end (metrics, journal).
    private func end(_ jobID: JobID, with event: JobEvent, whileOnLane: Bool = false) async {
        let (ended, admitted) = withState { $0.table.end(jobID, with: event, whileOnLane: whileOnLane) }
        for next in admitted { await dispatch(next) }
        guard ended, let outcome = JobOutcome(ending: event) else { return }
        CoordinatorMetrics.jobEnded(outcome.state == .cancelled ? "cancelled" : outcome.state == .failed ? "failed" : "finished")
        journal.append(.ended(job: jobID, outcome: outcome))
    }

    static func milliseconds(_ d: Duration) -> Int64 { d.wholeMilliseconds }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
