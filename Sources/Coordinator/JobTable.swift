import CaravanCore
import Inference

/// The coordinator's jobs as a state machine: a job is accepted (queued, its session parked),
/// moves onto a lane of the serving pipeline (prefill, then generating as tokens come), is handed
/// back and parked again when its pipeline stops or fails (and replayed on the next one), and ends
/// exactly once (finished, cancelled or failed). It also keeps the KV room ledger
/// (``KVAdmission``), the serving epoch, and the outbox of numbered events for clients.
///
/// No I/O and no wire types: the ``JobDesk`` holds it under its lock, carries out what the
/// transitions return (lanes, journal, metrics) and sends the events it takes from the outbox
/// (``takeEvents()``). Time comes in as `now`.
struct JobTable: Sendable {
    /// Every remembered job: unfinished ones and the last ``keptEndedJobs`` ended ones.
    private(set) var jobs: [JobID: JobRecord] = [:]
    /// Unfinished jobs by their sequence.
    private(set) var bySequence: [SequenceID: JobID] = [:]
    /// Ended jobs, oldest first.
    private(set) var ended: [JobID] = []
    /// The epoch of the pipeline serving now (nil: none).
    private(set) var servingEpoch: UInt64?
    /// Whether new jobs are taken (false once the coordinator shuts down).
    private(set) var admitting = true
    /// Why jobs cannot run now (shown while no pipeline serves or admission stopped).
    private(set) var unavailableReason = "the cluster is starting (waiting for workers)"
    /// The KV room of the stages, and the jobs waiting for it.
    private(set) var admission: KVAdmission
    /// Ended jobs kept for status and attach.
    let keptEndedJobs: Int
    /// Ended jobs whose session was still on a lane (or on its way to or from one) when they
    /// ended, by sequence: they keep their KV room until the lane lets go of the sequence (its
    /// cancelled finish or its hand back), so the room never goes to another job while the stages
    /// may still hold the sequence.
    private(set) var lingering: [SequenceID: (job: JobID, epoch: UInt64)] = [:]
    private var faultReportedEpoch: UInt64 = 0
    private var nextSequence: UInt64 = 0
    private var outbox: [JobEventMessage] = []

    /// An empty table for stages sized for `contextTokens x batchSequences` KV positions.
    init(contextTokens: Int, batchSequences: Int, keptEndedJobs: Int) {
        admission = KVAdmission(contextTokens: contextTokens, batchSequences: batchSequences)
        self.keptEndedJobs = keptEndedJobs
    }

    /// The events queued for clients since the last call, in the order they were decided.
    mutating func takeEvents() -> [JobEventMessage] {
        defer { outbox.removeAll() }
        return outbox
    }

    /// The unfinished job running `sequence`.
    func job(of sequence: SequenceID) -> JobID? { bySequence[sequence] }

    /// The sequences of unfinished jobs whose positions every stage computed, with that count
    /// (what a re-plan lets the stages keep), at most `limit` of them, the longest first.
    func continuingSequences(limit: Int) -> [SequenceID: Int] {
        let running = bySequence.compactMap { id, job in jobs[job].flatMap { $0.committed > 0 ? (id, $0.committed) : nil } }
        return Dictionary(uniqueKeysWithValues: running.sorted { $0.1 > $1.1 }.prefix(limit).map { $0 })
    }

    /// Jobs waiting for a pipeline.
    var parkedCount: Int { jobs.values.count { $0.parked != nil } }

    // MARK: Pipelines and admission

    /// A pipeline of `epoch` serves from now. Returns the parked jobs, in sequence order, to
    /// move onto it.
    mutating func serve(epoch: UInt64) -> [JobID] {
        servingEpoch = epoch
        return jobs.values.filter { $0.parked != nil }.sorted { $0.sequence < $1.sequence }.map(\.jobID)
    }

    /// No pipeline serves any more; jobs wait with `reason`.
    mutating func stopServing(_ reason: String) {
        unavailableReason = reason
        servingEpoch = nil
    }

    /// Why parked jobs wait now.
    mutating func setWaiting(_ reason: String) {
        unavailableReason = reason
        for id in jobs.keys where jobs[id]?.parked != nil { jobs[id]?.waitingReason = reason }
    }

    /// Refuses new jobs from now on; running ones continue.
    mutating func stopAdmitting(_ reason: String) {
        admitting = false
        unavailableReason = reason
    }

    /// Why jobs cannot be served now; nil while admitting with a pipeline serving.
    var unavailable: String? { admitting && servingEpoch != nil ? nil : unavailableReason }

    /// What a new submission meets: its sequence (numbered even if it is refused), and the load.
    struct Intake: Equatable {
        let sequence: SequenceID
        let admitting: Bool
        let unavailableReason: String
        /// Unfinished jobs in the table.
        let unfinished: Int
        /// Unfinished jobs of the submitting key (0 when not counted).
        let ownUnfinished: Int
    }

    /// Numbers a new submission and counts the load it meets; the unfinished jobs of `owner` are
    /// counted only when given (the per-client limit applies to it).
    mutating func intake(countingJobsOf owner: String?) -> Intake {
        nextSequence += 1
        let own = owner.map { key in bySequence.values.count { jobs[$0]?.owner == key } } ?? 0
        return Intake(sequence: SequenceID(nextSequence), admitting: admitting, unavailableReason: unavailableReason,
                      unfinished: bySequence.count, ownUnfinished: own)
    }

    /// Takes an admitted job: it is queued with its session parked, and its client (`peer`) gets
    /// the accepted event with the number of unfinished jobs ahead of it, which is returned.
    @discardableResult
    mutating func accept(_ id: JobID, clientRequestID: String, session: GenerationSession, promptTokens: Int,
                         submittedMs: UInt64, owner: String, peer: PeerID, now: ContinuousClock.Instant) -> Int {
        var record = JobRecord(jobID: id, clientRequestID: clientRequestID, sequence: session.sequence,
                               promptTokens: promptTokens, submittedMs: submittedMs, peer: peer, state: .queued, started: now)
        record.owner = owner
        record.kvCost = admission.cost(promptTokens: promptTokens, maxNewTokens: session.parameters.maxTokens)
        record.parked = session
        record.session = session
        record.waitingSince = now
        record.waitingReason = servingEpoch == nil ? unavailableReason : ""
        jobs[id] = record
        bySequence[session.sequence] = id
        let ahead = bySequence.count - 1
        emit(id, .accepted(job: id, promptTokens: promptTokens, queuePosition: ahead))
        return ahead
    }

    /// A parked job asks for KV room to start (``KVAdmission``); nil when it is not parked or has
    /// ended. While it waits, its waiting reason says so.
    mutating func requestRoom(_ id: JobID) -> KVAdmission.Decision? {
        guard let r = jobs[id], r.parked != nil, !r.isEnded else { return nil }
        let decision = admission.request(id.rawValue, cost: r.kvCost)
        if case .queued(let position) = decision {
            jobs[id]?.waitingReason = "waiting for KV room on the stages (\(admission.inUse) of \(admission.budget) positions in use; position \(position) when queued)"
        }
        return decision
    }

    /// Whether the job waits in the KV room queue.
    func isWaitingForRoom(_ id: JobID) -> Bool { admission.position(of: id.rawValue) != nil }

    /// Takes a parked job's session for lane `lane` of the pipeline of `epoch`: counts a replay
    /// when it ran before (on another pipeline, or after progress), and a queued job goes to
    /// prefill. Nil when that pipeline no longer serves or the job is not parked.
    mutating func moveToLane(_ id: JobID, epoch: UInt64, lane: Int) -> GenerationSession? {
        guard servingEpoch == epoch, var r = jobs[id], !r.isEnded, !r.cancelRequested, let session = r.parked else { return nil }
        if r.epoch != 0, session.processed > 0 || r.epoch != epoch { r.replays += 1 }
        r.parked = nil
        r.waitingSince = nil
        r.waitingReason = ""
        r.epoch = epoch
        r.lane = lane
        if r.state == .queued { r.state = .prefill }
        jobs[id] = r
        return session
    }

    // MARK: Lane events

    /// For metrics: how a token came relative to the job's previous one.
    enum TokenTiming: Equatable {
        /// The job's first token, `latency` after its submission.
        case first(latency: Duration, promptTokens: Int)
        /// A later token, `latency` after the previous one.
        case next(latency: Duration)
        /// The first token after a coordinator restart (no timing).
        case resumed
    }

    /// Records a generated token and queues it for the client, with its log-probabilities when the
    /// session recorded them (`pieceText` names the alternatives). Nil for an unknown job.
    mutating func recordToken(_ id: JobID, token: Int32, text: String, now: ContinuousClock.Instant,
                              pieceText: (Int32) -> String) -> TokenTiming? {
        guard var r = jobs[id], !r.isEnded else { return nil }
        var event = JobToken(id: token, text: text)
        if let session = r.session, r.tokenIDs.count < session.logprobs.count, !session.logprobs[r.tokenIDs.count].logprob.isNaN {
            let lp = session.logprobs[r.tokenIDs.count]
            event.logprob = lp.logprob
            event.alternatives = lp.top.map { JobToken.Alternative(id: $0.id, text: pieceText($0.id), logprob: $0.logprob) }
        }
        r.tokenIDs.append(token)
        r.texts.append(text)
        if let processed = r.session?.processed { r.committed = max(r.committed, processed) }
        r.state = .generating
        r.failuresWithoutProgress = 0
        r.stalledSince = nil
        let timing: TokenTiming
        if let last = r.lastToken {
            timing = .next(latency: now - last)
        } else if r.tokenIDs.count == 1 {
            timing = .first(latency: now - r.started, promptTokens: r.promptTokens)
        } else {
            timing = .resumed
        }
        r.lastToken = now
        if r.firstToken == nil { r.firstToken = now }
        jobs[id] = r
        emit(id, .token(event))
        return timing
    }

    /// The finish event of a job whose session finished for `reason` with `text` (counts and
    /// timings from the record); nil for an unknown job.
    func finish(_ id: JobID, reason: FinishReason, text: String, now: ContinuousClock.Instant) -> JobEvent? {
        guard let r = jobs[id] else { return nil }
        return .finished(JobFinish(reason: JobFinishReason(reason), text: text, promptTokens: r.promptTokens,
                                   completionTokens: r.tokenIDs.count,
                                   timeToFirstToken: r.firstToken.map { $0 - r.started } ?? .zero, total: now - r.started))
    }

    /// What follows a hand-back.
    enum AfterHandBack: Equatable {
        /// A newer pipeline serves: move the job onto it.
        case dispatch
        /// The pipeline of `epoch` still serves but failed a step: it needs a re-plan (reported
        /// once per epoch).
        case fault(epoch: UInt64)
        /// Wait for the next pipeline.
        case wait
        /// Its client asked to cancel it while the session was on its way back: end it as
        /// cancelled (the session is not parked, nothing can dispatch it again).
        case cancel
    }

    /// A lane handed the job's session back (`reason`): it is parked again, unless a cancel was
    /// asked for meanwhile (then the caller ends it) or it ended (then the session is dropped).
    mutating func handBack(_ id: JobID, session: GenerationSession, reason: String,
                           now: ContinuousClock.Instant) -> AfterHandBack {
        guard var r = jobs[id], !r.isEnded else { return .wait }
        if r.cancelRequested {
            jobs[id]?.lane = nil
            return .cancel
        }
        r.lane = nil
        r.parked = session
        r.committed = max(r.committed, session.processed)
        r.waitingSince = now
        r.waitingReason = reason
        r.failuresWithoutProgress += 1
        if r.stalledSince == nil { r.stalledSince = now }
        jobs[id] = r
        guard let serving = servingEpoch else { return .wait }
        if serving != r.epoch { return .dispatch }
        guard faultReportedEpoch != r.epoch else { return .wait }
        faultReportedEpoch = r.epoch
        return .fault(epoch: r.epoch)
    }

    // MARK: Ends

    /// Ends a job with `event` (a finish, cancelled when its reason is, or a failure) and queues
    /// it for the client; frees its KV room. Returns whether it ended now (false when unknown or
    /// ended already) and the waiting jobs that may start in the freed room. The oldest ended
    /// jobs beyond ``keptEndedJobs`` are forgotten.
    ///
    /// With `whileOnLane` (the job ends from outside its lane, e.g. it timed out) a job whose
    /// session a lane holds, or is on its way to or from one, keeps its room until that lane lets
    /// go of the sequence (``laneReleased(_:)``); the caller then cancels it on the lane.
    mutating func end(_ id: JobID, with event: JobEvent, whileOnLane: Bool = false) -> (ended: Bool, admitted: [JobID]) {
        guard var r = jobs[id], !r.isEnded, let outcome = JobOutcome(ending: event) else { return (false, []) }
        let admitted: [JobID]
        if whileOnLane, r.lane != nil {
            lingering[r.sequence] = (id, r.epoch)
            admitted = []
        } else {
            admitted = admission.release(id.rawValue).compactMap { JobID($0) }
        }
        r.state = outcome.state
        r.endEvent = event
        r.parked = nil
        r.session = nil
        r.lane = nil
        if case .failed(let f) = event { r.error = f.message }
        jobs[id] = r
        bySequence[r.sequence] = nil
        ended.append(id)
        emit(id, event)
        if ended.count > keptEndedJobs {
            let excess = ended.prefix(ended.count - keptEndedJobs)
            for old in excess { jobs[old] = nil }
            ended.removeFirst(excess.count)
        }
        return (true, admitted)
    }

    /// A lane let go of `sequence` (finished or cancelled it, releasing it on the stages, or
    /// handed it back): the room of an ended job that still held it is freed. Returns the epoch
    /// of the pipeline the job ran on and the waiting jobs that may start in the room; nil when
    /// no ended job lingered on that sequence.
    mutating func laneReleased(_ sequence: SequenceID) -> (epoch: UInt64, admitted: [JobID])? {
        guard let (id, epoch) = lingering.removeValue(forKey: sequence) else { return nil }
        return (epoch, admission.release(id.rawValue).compactMap { JobID($0) })
    }

    /// Whether a session just handed to a lane must be taken off it again: its job ended or a
    /// cancel was asked for while the session was on its way there.
    func mustLeaveLane(_ id: JobID) -> Bool {
        guard let r = jobs[id] else { return true }
        return r.isEnded || r.cancelRequested
    }

    /// A job that waited (parked, or stalled across failing pipelines) beyond the queue timeout.
    struct Expired: Equatable {
        let job: JobID
        let reason: String
        /// Its lane on the serving pipeline, when it is on one.
        let lane: Int?
        let sequence: SequenceID
    }

    /// The unfinished jobs that waited for a pipeline, or made no progress across failing
    /// pipelines, for longer than `limit`.
    func expired(after limit: Duration, now: ContinuousClock.Instant) -> [Expired] {
        jobs.values.compactMap { r in
            guard !r.isEnded, let since = r.parked != nil ? (r.stalledSince ?? r.waitingSince) : r.stalledSince,
                  now - since > limit else { return nil }
            let lane = r.lane.flatMap { servingEpoch == r.epoch ? $0 : nil }
            return Expired(job: r.jobID, reason: r.waitingReason.isEmpty ? unavailableReason : r.waitingReason,
                           lane: lane, sequence: r.sequence)
        }
    }

    // MARK: Client requests

    /// Where a job to cancel is.
    enum CancelTarget {
        /// On lane `lane` of the serving pipeline.
        case lane(Int, SequenceID)
        /// Parked: its session, now claimed (no dispatch can take it meanwhile).
        case parked(GenerationSession)
        /// Its session is on its way between a lane and the desk (handed back, or being put on
        /// a lane): the cancel is recorded, and whoever takes the session next ends the job.
        case pending
        /// Unknown or ended.
        case nothing
        /// Another key's job.
        case notYours
    }

    /// Cancels a job for a caller that `mayTouch` jobs of an owner: the request is recorded in
    /// the job (so that a hand back or a dispatch racing with it ends the job instead of running
    /// it on), and a parked session is taken out of the job at once.
    mutating func cancelTarget(_ id: JobID, mayTouch: (String) -> Bool) -> CancelTarget {
        guard let r = jobs[id] else { return .nothing }
        guard mayTouch(r.owner) else { return .notYours }
        guard !r.isEnded else { return .nothing }
        // Asked before: the cancel is under way (a client repeating it queues nothing more).
        guard !r.cancelRequested else { return .pending }
        jobs[id]?.cancelRequested = true
        if let session = claimParked(id) { return .parked(session) }
        guard let (lane, sequence) = runningLane(of: id) else { return .pending }
        return .lane(lane, sequence)
    }

    /// The lane of the serving pipeline an unfinished job runs on.
    func runningLane(of id: JobID) -> (lane: Int, sequence: SequenceID)? {
        guard let r = jobs[id], !r.isEnded, let lane = r.lane, servingEpoch == r.epoch else { return nil }
        return (lane, r.sequence)
    }

    /// Takes a parked, unfinished job's session out of the job, so that nothing else dispatches it.
    mutating func claimParked(_ id: JobID) -> GenerationSession? {
        guard let session = jobs[id]?.parked, jobs[id]?.isEnded == false else { return nil }
        jobs[id]?.parked = nil
        return session
    }

    /// A client (`peer`) attaches to a job it `mayTouch`: its events go there from now on, and it
    /// gets the accepted event, the tokens from `receivedTokens` on and the end if there was one.
    /// False for an unknown job or another key's.
    mutating func attach(_ id: JobID, peer: PeerID, receivedTokens: Int, mayTouch: (String) -> Bool) -> Bool {
        guard let r = jobs[id], mayTouch(r.owner) else { return false }
        jobs[id]?.peer = peer
        emit(id, .accepted(job: id, promptTokens: r.promptTokens, queuePosition: 0))
        for i in min(max(0, receivedTokens), r.tokenIDs.count)..<r.tokenIDs.count {
            emit(id, .token(JobToken(id: r.tokenIDs[i], text: r.texts[i])))
        }
        if let end = r.endEvent { emit(id, end) }
        return true
    }

    /// A job's status for a caller that `mayTouch` jobs of an owner (nil: unknown, or not its
    /// job): a parked job's waiting reason defaults to why jobs cannot run now; the position in
    /// the KV room queue.
    func status(of id: JobID, mayTouch: (String) -> Bool) -> JobStatus? {
        guard let r = jobs[id], mayTouch(r.owner) else { return nil }
        var s = r.status
        if r.parked != nil, s.waitingReason.isEmpty { s.waitingReason = unavailableReason }
        s.queuePosition = admission.position(of: id.rawValue) ?? 0
        return s
    }

    /// Jobs waiting for KV room, by job: 1 = the next to start.
    var roomQueue: [JobID: Int] {
        var out: [JobID: Int] = [:]
        for (i, entry) in admission.queue.enumerated() {
            if let id = JobID(entry.job), out[id] == nil { out[id] = i + 1 }
        }
        return out
    }

    // MARK: Restart

    /// What a restore rebuilt.
    struct Restored: Equatable {
        /// The highest plan epoch recorded.
        let epoch: UInt64
        /// The entries a compacted journal keeps (what was restored, in order).
        let kept: [JournalEntry]
        /// Unfinished jobs restored (parked, waiting for the first pipeline).
        let unfinished: Int
    }

    /// Rebuilds the jobs of a previous run from its journal `entries`: unfinished ones are parked
    /// (their sessions made by `session` from the submission and the tokens generated so far; a
    /// job it cannot make one for is dropped) and resume where they stopped; the last
    /// ``keptEndedJobs`` ended ones stay queryable. No client is attached to any of them.
    mutating func restore(_ entries: [JournalEntry], now: ContinuousClock.Instant,
                          session: (JournalSubmission, [Int32]) -> GenerationSession?) -> Restored {
        var submissions: [JobID: JournalSubmission] = [:]
        var order: [JobID] = []
        var tokens: [JobID: [(id: Int32, text: String)]] = [:]
        var ends: [JobID: JobOutcome] = [:]
        var epoch: UInt64 = 0
        for e in entries {
            switch e {
            case .submitted(let s):
                submissions[s.job] = s
                order.append(s.job)
            case let .token(job, id, text): tokens[job, default: []].append((id, text))
            case let .ended(job, outcome): ends[job] = outcome
            case .epoch(let n): epoch = max(epoch, n)
            }
        }
        var restored = 0
        var kept: [JournalEntry] = [.epoch(epoch)]
        let keepEnded = Set(order.filter { ends[$0] != nil }.suffix(keptEndedJobs))
        for id in order {
            guard let sub = submissions[id] else { continue }
            nextSequence = max(nextSequence, sub.sequence.rawValue)
            let generated = tokens[id] ?? []
            var record = JobRecord(jobID: id, clientRequestID: sub.clientRequestID, sequence: sub.sequence,
                                   promptTokens: sub.prompt.count, submittedMs: sub.submittedMs, peer: nil,
                                   state: generated.isEmpty ? .queued : .generating, started: now)
            record.owner = sub.owner ?? ""
            record.tokenIDs = generated.map { $0.id }
            record.texts = generated.map { $0.text }
            if let outcome = ends[id] {
                guard keepEnded.contains(id) else { continue }
                record.state = outcome.state
                switch outcome {
                case .failed(let message):
                    record.error = message
                    record.endEvent = .failed(JobFailure(.internal, message))
                case let .finished(reason, text):
                    record.endEvent = .finished(JobFinish(reason: reason, text: text, promptTokens: record.promptTokens,
                                                          completionTokens: record.tokenIDs.count))
                }
                jobs[id] = record
                ended.append(id)
            } else {
                guard let parked = session(sub, record.tokenIDs) else { continue }
                record.parked = parked
                record.session = parked
                record.kvCost = admission.cost(promptTokens: sub.prompt.count, maxNewTokens: parked.parameters.maxTokens)
                record.waitingSince = now
                record.waitingReason = "the coordinator restarted; waiting for the pipeline"
                jobs[id] = record
                bySequence[record.sequence] = id
                restored += 1
            }
            kept.append(.submitted(sub))
            kept += generated.map { .token(job: id, id: $0.id, text: $0.text) }
            if let outcome = ends[id] { kept.append(.ended(job: id, outcome: outcome)) }
        }
        return Restored(epoch: epoch, kept: kept, unfinished: restored)
    }

    // MARK: Emitting

    /// Queues `event` for the job's client, numbered (nothing when no client is attached).
    private mutating func emit(_ id: JobID, _ event: JobEvent) {
        guard let r = jobs[id], let peer = r.peer else { return }
        jobs[id]?.eventSequence += 1
        outbox.append(JobEventMessage(peer: peer, job: id, clientRequestID: r.clientRequestID,
                                      sequence: r.eventSequence + 1, event: event))
    }
}
