import CaravanCore
import CaravanWire
import Foundation
import ZeroMQ

/// Several jobs streamed at once through a ``JobClient``, recording for each job every event's
/// sequence number and every token's id and arrival time, so that a test can act while they run
/// (inject a fault after the first tokens) and then check that nothing was lost or doubled.
enum JobStream {
    /// What one job's stream delivered.
    struct Job: Sendable, Equatable {
        var clientID: String
        var jobID = ""
        var tokens: [Int32] = []
        var text = ""
        var arrivals: [ContinuousClock.Instant] = []
        /// `JobEvent.sequence` of every event, in arrival order (must count up by one).
        var sequences: [UInt64] = []
        var finish: JobFinishReason?
        var error: String?
        var done: Bool { finish != nil || error != nil }

        /// Whether the event sequence numbers count up by one from the first (0 or 1: the
        /// coordinator numbers the accepted event 1) without gap or repeat.
        var sequencesContiguous: Bool {
            guard let first = sequences.first, first <= 1 else { return sequences.isEmpty }
            return sequences == (first..<first + UInt64(sequences.count)).map { $0 }
        }

        /// The first token that arrived after `instant`, if any.
        func firstArrival(after instant: ContinuousClock.Instant) -> ContinuousClock.Instant? {
            arrivals.first { $0 > instant }
        }

        /// How long after `instant` this job's stream resumed: the end of the first pause after it
        /// (a gap between tokens of more than three times the stream's median gap, counting the
        /// wait from `instant` to the first token; tokens already in flight at `instant` arrive
        /// before it), relative to `instant`; the first token when there was no pause; nil when no
        /// token followed.
        func resumeDelay(after instant: ContinuousClock.Instant) -> Duration? {
            let later = arrivals.filter { $0 > instant }
            guard let first = later.first else { return nil }
            let gaps = zip(arrivals.dropFirst(), arrivals).map { $0 - $1 }.sorted()
            let pause = max(gaps.isEmpty ? Duration.zero : gaps[gaps.count / 2] * 3, .milliseconds(300))
            var previous = instant
            for a in later {
                if a - previous > pause { return a - instant }
                previous = a
            }
            return first - instant
        }

        /// Records one event of this job's stream that arrived at `now`, read as CaravanClient reads
        /// it (`JobEvent(wire:)`: an event that does not convert is an error).
        mutating func record(_ e: Caravan_V1_JobEvent, at now: ContinuousClock.Instant = .now) {
            jobID = e.jobID
            sequences.append(e.sequence)
            do {
                switch try JobEvent(wire: e) {
                case .accepted: break
                case .token(let t):
                    tokens.append(t.id)
                    text += t.text
                    arrivals.append(now)
                case .finished(let f):
                    finish = f.reason
                    text += f.text
                case .failed(let f):
                    self.error = f.description
                }
            } catch {
                self.error = "unreadable event: \(error)"
            }
        }

        /// The token stream, for failure messages.
        var summary: String {
            "\(clientID) [\(jobID)]: \(tokens.count) tokens, finish \(finish.map { "\($0)" } ?? "-"), error \(error ?? "-")"
        }
    }

    /// Submits `jobs` at once and receives until every one has finished or failed (bounded by
    /// `timeout`). After each event `progress` sees every job so far (called on this task; keep it
    /// short: start slow work elsewhere).
    static func run(_ client: JobClient, _ jobs: [Caravan_V1_JobSubmit], timeout: Duration,
                    progress: ([String: Job]) -> Void = { _ in }) async throws -> [String: Job] {
        var results: [String: Job] = [:]
        for job in jobs { results[job.clientRequestID] = Job(clientID: job.clientRequestID) }
        try await client.send(jobs)
        try await client.receiveEvents(until: { !results.values.contains(where: { !$0.done }) }, timeout: timeout,
                                       operation: "job streams",
                                       detail: { "timed out after \(timeout): " + results.values.map(\.summary).sorted().joined(separator: "; ") }) { e in
            guard var r = results[e.clientRequestID] else { return }
            r.record(e)
            results[e.clientRequestID] = r
            progress(results)
        }
        return results
    }
}

/// A value shared between a test's receive loop and a fault thread.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
