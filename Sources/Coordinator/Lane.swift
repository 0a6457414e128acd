import CaravanCore
import Inference

/// What a lane reports about one of its sequences.
public enum LaneEvent: Sendable {
    /// A generation event (token or finish).
    case generation(GenerationEvent)
    /// The lane let go of an unfinished session: it was stopped (re-plan) or its pipeline step
    /// failed (`reason`). The session keeps every token generated so far; the job desk moves it to
    /// the next pipeline, where it is replayed.
    case handedBack(GenerationSession, reason: String)
}

/// One ``BatchScheduler`` driven by its own loop: the coordinator runs one lane per pipeline stage,
/// so that while one lane's step is on stage 2, another lane's step can run on stage 1. New
/// sessions and cancellations are queued and applied between steps (never while a step that
/// includes the sequence is in flight).
public actor Lane {
    /// The lane's number (for logs).
    public let index: Int
    private let scheduler: BatchScheduler
    private let sink: @Sendable (SequenceID, LaneEvent) async -> Void
    private var incoming: [GenerationSession] = []
    private var cancels: [SequenceID] = []
    private var active: Set<SequenceID> = []
    private let signals: AsyncStream<Void>
    private let signal: AsyncStream<Void>.Continuation
    private var stopReason: String?
    /// Steps run (for status and tests).
    public private(set) var steps = 0

    /// A lane stepping `engine`, reporting every event to `sink`.
    public init(index: Int, engine: any ForwardEngine, maxBatchRows: Int,
                sink: @escaping @Sendable (SequenceID, LaneEvent) async -> Void) {
        self.index = index
        self.scheduler = BatchScheduler(engine: engine, maxBatchRows: maxBatchRows)
        self.sink = sink
        (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Sessions queued or running: the load used to pick a lane.
    public var load: Int { active.count }

    /// Queues a new session. A stopped lane hands it straight back.
    public func submit(_ session: GenerationSession) async {
        if let reason = stopReason {
            await sink(session.sequence, .handedBack(session, reason: reason))
            return
        }
        incoming.append(session)
        active.insert(session.sequence)
        signal.yield()
    }

    /// Queues the cancellation of a sequence; false when the lane does not hold it.
    @discardableResult
    public func cancel(_ sequence: SequenceID) -> Bool {
        guard active.contains(sequence) else { return false }
        if !cancels.contains(sequence) { cancels.append(sequence) }
        signal.yield()
        return true
    }

    /// Stops the lane: its loop ends after the current step and hands its unfinished sessions back
    /// with `reason`.
    public func stop(_ reason: String) {
        if stopReason == nil { stopReason = reason }
        signal.yield()
    }

    /// Steps until the task is cancelled or the lane is stopped.
    public func run() async {
        var wake = signals.makeAsyncIterator()
        defer { signal.finish() }
        while !Task.isCancelled {
            for s in incoming { scheduler.add(s) }
            incoming.removeAll()
            let toCancel = cancels
            cancels.removeAll()
            for sequence in toCancel {
                active.remove(sequence)
                if let event = await scheduler.cancel(sequence) { await sink(sequence, .generation(event)) }
            }
            if let reason = stopReason {
                await handBack(reason)
                return
            }
            guard scheduler.hasWork else {
                guard await wake.next() != nil else { return }
                continue
            }
            do {
                let events = try await scheduler.step()
                steps += 1
                for (sequence, event) in events {
                    if case .finished = event { active.remove(sequence) }
                    await sink(sequence, .generation(event))
                }
            } catch {
                await handBack(stopReason ?? "pipeline step failed: \(error)")
            }
        }
        await handBack(stopReason ?? "the lane was cancelled")
    }

    private func handBack(_ reason: String) async {
        let sessions = scheduler.evacuate()
        active.removeAll()
        for session in sessions { await sink(session.sequence, .handedBack(session, reason: reason)) }
    }
}
