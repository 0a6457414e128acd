import CaravanCore
import CaravanTransport
import Logging

/// How many log lines of a kind may be written: a token bucket per (category, key) and one per
/// category, whatever the keys. A line is written when both have a token; each refills at its
/// burst per `interval`. What is not written is counted per (category, key) and reported with
/// that pair's next line. Pure (time comes in as `now`); ``LogLimiter`` holds one.
///
/// With a burst of 3 per 10 s per pair and 20 per 10 s per category, a peer that sends a
/// million bad frames makes a daemon write at most 20 lines of that kind per 10 s, however many
/// keys or addresses it uses; a few lines of each honest peer still get through while nobody
/// floods.
public struct LogBudget: Sendable {
    /// Lines one (category, key) pair may write at once, and per ``interval`` afterwards.
    public let burst: Int
    /// Lines one category may write at once, and per ``interval`` afterwards.
    public let categoryBurst: Int
    /// The refill period.
    public let interval: Duration
    /// Pairs remembered at most (the one seen longest ago is forgotten first, its count lost).
    public static let capacity = 256

    private struct Bucket {
        var tokens: Double
        var at: ContinuousClock.Instant
        var suppressed = 0

        mutating func refill(burst: Int, interval: Duration, now: ContinuousClock.Instant) {
            let elapsed = now - at
            guard elapsed > .zero else { return }
            tokens = min(Double(burst), tokens + Double(burst) * (elapsed / interval))
            at = now
        }
    }

    private var pairs: [String: Bucket] = [:]
    private var categories: [String: Bucket] = [:]

    /// A budget of `burst` lines per pair and `categoryBurst` per category, refilled per `interval`.
    public init(burst: Int = 3, categoryBurst: Int = 20, interval: Duration = .seconds(10)) {
        self.burst = max(1, burst)
        self.categoryBurst = max(self.burst, categoryBurst)
        self.interval = interval > .zero ? interval : .seconds(1)
    }

    /// A line of `category` about `key` wants to be written at `now`: nil when it is not to be
    /// written (it is counted), else how many lines of the same pair were not written since its
    /// last one.
    public mutating func admit(_ category: String, key: String = "", now: ContinuousClock.Instant) -> Int? {
        let id = category + "\u{1F}" + key
        if pairs[id] == nil, pairs.count >= Self.capacity,
           let oldest = pairs.min(by: { $0.value.at < $1.value.at })?.key {
            pairs[oldest] = nil
        }
        var pair = pairs[id] ?? Bucket(tokens: Double(burst), at: now)
        var all = categories[category] ?? Bucket(tokens: Double(categoryBurst), at: now)
        pair.refill(burst: burst, interval: interval, now: now)
        all.refill(burst: categoryBurst, interval: interval, now: now)
        defer {
            pairs[id] = pair
            categories[category] = all
        }
        guard pair.tokens >= 1, all.tokens >= 1 else {
            pair.suppressed += 1
            return nil
        }
        pair.tokens -= 1
        all.tokens -= 1
        defer { pair.suppressed = 0 }
        return pair.suppressed
    }
}

/// Writes the log lines a peer can cause (one per bad frame, refused connection, stray result,
/// unknown worker's heartbeat...) within a ``LogBudget``, so that no peer can make a daemon write
/// without bound. A line written after suppressed ones of its kind carries `suppressed=N` (N
/// similar lines, same message and key, were not written since the last one).
///
/// A line's message is a constant (`StaticString`): it names the kind of line, and the budget is
/// kept per message; what varies goes in the metadata. The key names who caused it (a peer's key
/// or address) when one peer should not use up the lines of the others.
public final class LogLimiter: Sendable {
    /// The logger lines go to.
    public let logger: Logger
    private let budget: LockedValue<LogBudget>

    /// Lines to `logger` within `budget`.
    public init(logger: Logger, budget: LogBudget = LogBudget()) {
        self.logger = logger
        self.budget = LockedValue(budget)
    }

    /// Writes `message` at `level` about `key`, unless the budget of that message (and key) is
    /// spent; returns whether it was written.
    @discardableResult
    public func log(_ level: Logger.Level, _ message: StaticString, key: String = "",
                    metadata: @autoclosure () -> Logger.Metadata = [:],
                    file: String = #fileID, function: String = #function, line: UInt = #line) -> Bool {
        guard logger.logLevel <= level else { return false }
        let text = message.description
        guard let suppressed = budget.withLock({ $0.admit(text, key: key, now: .now) }) else { return false }
        var fields = metadata()
        if suppressed > 0 { fields["suppressed"] = "\(suppressed)" }
        // The caller's place, so that a line names the module that wrote it, not this one.
        logger.log(level: level, "\(text)", metadata: fields, file: file, function: function, line: line)
        return true
    }

    /// ``log(_:_:key:metadata:)`` at warning level.
    @discardableResult
    public func warning(_ message: StaticString, key: String = "", metadata: @autoclosure () -> Logger.Metadata = [:],
                       file: String = #fileID, function: String = #function, line: UInt = #line) -> Bool {
        log(.warning, message, key: key, metadata: metadata(), file: file, function: function, line: line)
    }

    /// ``log(_:_:key:metadata:)`` at notice level.
    @discardableResult
    public func notice(_ message: StaticString, key: String = "", metadata: @autoclosure () -> Logger.Metadata = [:],
                       file: String = #fileID, function: String = #function, line: UInt = #line) -> Bool {
        log(.notice, message, key: key, metadata: metadata(), file: file, function: function, line: line)
    }

    /// ``log(_:_:key:metadata:)`` at info level.
    @discardableResult
    public func info(_ message: StaticString, key: String = "", metadata: @autoclosure () -> Logger.Metadata = [:],
                       file: String = #fileID, function: String = #function, line: UInt = #line) -> Bool {
        log(.info, message, key: key, metadata: metadata(), file: file, function: function, line: line)
    }

    /// ``log(_:_:key:metadata:)`` at error level.
    @discardableResult
    public func error(_ message: StaticString, key: String = "", metadata: @autoclosure () -> Logger.Metadata = [:],
                       file: String = #fileID, function: String = #function, line: UInt = #line) -> Bool {
        log(.error, message, key: key, metadata: metadata(), file: file, function: function, line: line)
    }
}
