import CaravanCore
import Llama

/// Steps many ``GenerationSession``s together through one ``ForwardEngine``: each step gathers one
/// row from every decoding session and prompt chunks from sessions still reading their prompt,
/// runs a single forward pass over all of them (one pass over the weights), and hands each session
/// its logits, or the token the engine sampled for it when the engine honours the rows'
/// sampling requests.
public final class BatchScheduler: @unchecked Sendable {
    /// The engine rows go through.
    public let engine: any ForwardEngine
    /// Most rows per forward step (prompt chunks are cut to fit).
    public let maxBatchRows: Int
    /// Most history tokens the sampling requests of one step carry (a few hundred KB on the wire,
    /// well under a message's header limit); a step over it carries no requests.
    public static let maxRequestHistory = 65_536
    private(set) var sessions: [GenerationSession] = []

    /// Creates a scheduler; `maxBatchRows` bounds the rows of one step (llama.cpp's n_batch).
    public init(engine: any ForwardEngine, maxBatchRows: Int = 512) {
        self.engine = engine
        self.maxBatchRows = max(1, maxBatchRows)
    }

    /// Adds a session; it takes part from the next step on.
    public func add(_ session: GenerationSession) { sessions.append(session) }

    /// Whether any session is still generating.
    public var hasWork: Bool { sessions.contains { !$0.isFinished } }

    /// Cancels a session; returns its final event, or nil if unknown or already finished.
    public func cancel(_ sequence: SequenceID) async -> GenerationEvent? {
        guard let i = sessions.firstIndex(where: { $0.sequence == sequence }) else { return nil }
        let event = sessions[i].cancel()
        sessions.remove(at: i)
        await engine.release(sequence)
        return event
    }

    /// Removes and returns every unfinished session without touching the engine (its pipeline is
    /// gone): the caller moves them elsewhere, typically after ``GenerationSession/rewind()``.
    public func evacuate() -> [GenerationSession] {
        defer { sessions.removeAll() }
        return sessions.filter { !$0.isFinished }
    }

    /// Runs one forward step; returns the events of every session that produced one.
    /// Finished sessions are removed and their caches released.
    public func step() async throws -> [(SequenceID, GenerationEvent)] {
        let active = sessions.filter { !$0.isFinished }
        guard !active.isEmpty else { return [] }
        // Decoding sessions first (one row each), then prompt chunks in the remaining room.
        var rows: [StageEntry] = []
        var owners: [(GenerationSession, Int)] = []  // session, rows taken
        let decoding = active.filter { $0.tokens.count - $0.processed == 1 }
        let prefilling = active.filter { $0.tokens.count - $0.processed > 1 }
        for s in decoding + prefilling {
            let room = maxBatchRows - rows.count
            guard room > 0 else { break }
            let entries = s.pendingEntries(limit: room)
            guard !entries.isEmpty else { continue }
            rows.append(contentsOf: entries)
            owners.append((s, entries.count))
        }
        guard !rows.isEmpty else { return [] }
        // Penalty windows travel with the rows to a remote last stage; past a budget (whole-history
        // windows of long sequences) the step asks for logits instead and samples here.
        if rows.reduce(0, { $0 + ($1.sampling?.history.count ?? 0) }) > Self.maxRequestHistory {
            for i in rows.indices { rows[i].sampling = nil }
        }
        let output = try await engine.forward(StageBatch(entries: rows))
        // Each session's newest row is the last of its rows; it alone wants logits.
        var events: [(SequenceID, GenerationEvent)] = []
        func deliver(_ accept: (GenerationSession, Int) -> [GenerationEvent]) {
            var base = 0
            for (session, count) in owners {
                session.markProcessed(count)
                for e in accept(session, base + count - 1) { events.append((session.sequence, e)) }
                base += count
            }
        }
        switch output {
        case var .logits(values, entryIndices, vocabulary):
            var rowOfEntry: [Int: Int] = [:]
            for (r, e) in entryIndices.enumerated() { rowOfEntry[e] = r }
            deliver { session, last in
                guard let r = rowOfEntry[last] else { return [] }
                return values.withUnsafeMutableBufferPointer { buf in
                    session.accept(logits: UnsafeMutableBufferPointer(rebasing: buf[(r * vocabulary)..<((r + 1) * vocabulary)]))
                }
            }
        case let .sampled(results, entryIndices):
            var resultOfEntry: [Int: SampledRow] = [:]
            for (result, e) in zip(results, entryIndices) { resultOfEntry[e] = result }
            deliver { session, last in resultOfEntry[last].map { session.accept(sampled: $0) } ?? [] }
        case .hidden:
            preconditionFailure("a full-model engine returns logits or sampled tokens")
        }
        for s in sessions where s.isFinished { await engine.release(s.sequence) }
        sessions.removeAll { $0.isFinished }
        return events
    }
}
