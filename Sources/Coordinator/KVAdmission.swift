/// Admission control by KV room: a job starts only when every stage can hold its context, so a
/// worker's KV memory stays within what the plan sized for it, whatever the load.
///
/// The plan sizes each stage's KV cache for `contextTokens x batchSequences` positions (the
/// budget). A worker grows a sequence's cache on demand, doubling from 64 positions up to the
/// context limit, so a job that may reach `need` positions (prompt + most new tokens) ends up
/// holding at most `min(context, max(64, 2 x need))` positions: that is what a job reserves, from
/// its start until it ends. Jobs that find no room wait in first-come order (their position is
/// shown by `caravanctl status`); one that could never fit is refused. A pure state machine: the
/// job desk feeds it and carries out what it returns.
public struct KVAdmission: Sendable, Equatable {
    /// Positions every stage's cache holds (context x batch sequences).
    public let budget: Int
    /// The context limit (positions of one sequence).
    public let contextTokens: Int
    /// Positions reserved by each running job.
    public private(set) var reserved: [String: Int] = [:]
    /// Waiting jobs in arrival order, with what each will reserve.
    public private(set) var queue: [(job: String, cost: Int)] = []

    public static func == (a: KVAdmission, b: KVAdmission) -> Bool {
        a.budget == b.budget && a.reserved == b.reserved && a.queue.map(\.job) == b.queue.map(\.job)
    }

    /// Admission for stages sized for `contextTokens x batchSequences` positions.
    public init(contextTokens: Int, batchSequences: Int) {
        self.contextTokens = max(1, contextTokens)
        let (product, overflow) = self.contextTokens.multipliedReportingOverflow(by: max(1, batchSequences))
        budget = overflow ? .max : product
    }

    /// Positions a job of `promptTokens` that may generate `maxNewTokens` reserves.
    public func cost(promptTokens: Int, maxNewTokens: Int) -> Int {
        let (need, overflow) = max(0, promptTokens).addingReportingOverflow(max(0, maxNewTokens))
        guard !overflow, need < contextTokens else { return contextTokens }
        return min(contextTokens, max(64, 2 * need))
    }

    /// Positions reserved now.
    public var inUse: Int { reserved.values.reduce(0, +) }

    /// What happens to a job asking to start.
    public enum Decision: Equatable, Sendable {
        /// It may start now (its room is reserved).
        case start
        /// It waits; `position` 1 is the next to start.
        case queued(position: Int)
        /// It can never fit.
        case refused(String)
    }

    /// A job asks to start with `cost` positions. A job already running or waiting keeps its
    /// place. Jobs start in arrival order: a small job does not pass a waiting big one.
    public mutating func request(_ job: String, cost: Int) -> Decision {
        if reserved[job] != nil { return .start }
        if let i = queue.firstIndex(where: { $0.job == job }) { return .queued(position: i + 1) }
        guard cost <= budget else {
            return .refused("the job needs \(cost) KV positions per stage and the plan sized \(budget) "
                + "(context \(contextTokens)); it can never start")
        }
        if queue.isEmpty, inUse + cost <= budget {
            reserved[job] = cost
            return .start
        }
        queue.append((job, cost))
        return .queued(position: queue.count)
    }

    /// A job ended (or left the queue): its room is freed. Returns the waiting jobs that may
    /// start now, in order (their room is reserved).
    public mutating func release(_ job: String) -> [String] {
        reserved[job] = nil
        queue.removeAll { $0.job == job }
        var started: [String] = []
        while let next = queue.first, inUse + next.cost <= budget {
            queue.removeFirst()
            reserved[next.job] = next.cost
            started.append(next.job)
        }
        return started
    }

    /// The waiting position of `job` (1 = next), or nil when it is not waiting.
    public func position(of job: String) -> Int? { queue.firstIndex { $0.job == job }.map { $0 + 1 } }

    /// Whether `job` holds room.
    public func isRunning(_ job: String) -> Bool { reserved[job] != nil }
}
