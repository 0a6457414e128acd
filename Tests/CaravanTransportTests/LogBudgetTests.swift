import CaravanCore
import CaravanTransport
import Logging
import XCTest

/// The log budget: a burst per (message, key), refilled over the interval, a cap per message
/// whatever the keys, the count of what was not written, and a bounded memory of keys.
final class LogBudgetTests: XCTestCase {
    let t0 = ContinuousClock.now

    func testAPairWritesItsBurstThenOneLinePerRefillWithTheCountOfSuppressedOnes() {
        var budget = LogBudget(burst: 2, categoryBurst: 10, interval: .seconds(10))
        XCTAssertEqual(budget.admit("bad frame", key: "K", now: t0), 0)
        XCTAssertEqual(budget.admit("bad frame", key: "K", now: t0), 0)
        for _ in 0..<1000 { XCTAssertNil(budget.admit("bad frame", key: "K", now: t0 + .seconds(1))) }
        XCTAssertEqual(budget.admit("bad frame", key: "L", now: t0 + .seconds(1)), 0, "another key has its own burst")
        XCTAssertEqual(budget.admit("refused", key: "K", now: t0 + .seconds(1)), 0, "another message too")
        XCTAssertEqual(budget.admit("bad frame", key: "K", now: t0 + .seconds(5)), 1000, "half the interval refills one line")
        XCTAssertNil(budget.admit("bad frame", key: "K", now: t0 + .seconds(5)))
        XCTAssertEqual(budget.admit("bad frame", key: "K", now: t0 + .seconds(60)), 1)
    }

    func testAMessageWritesAtMostItsCategoryBurstWhateverTheKeys() {
        var budget = LogBudget(burst: 3, categoryBurst: 20, interval: .seconds(10))
        var written = 0
        for i in 0..<100_000 where budget.admit("refused a connection", key: "address-\(i)", now: t0 + .microseconds(i)) != nil {
            written += 1
        }
        XCTAssertEqual(written, 20, "a peer cycling through keys or addresses gets the category's burst, no more")
        XCTAssertEqual(budget.admit("another message", key: "x", now: t0 + .seconds(1)), 0)
    }

    func testTheLimiterWritesThroughItsLoggerWithTheSuppressedCount() {
        let lines = LockedValue<[String]>([])
        var logger = Logger(label: "t") { _ in Capture(lines: lines) }
        logger.logLevel = .info
        let limiter = LogLimiter(logger: logger, budget: LogBudget(burst: 1, interval: .seconds(3600)))
        XCTAssertTrue(limiter.warning("dropped a bad frame", key: "K", metadata: ["reason": "x"]))
        for _ in 0..<10 { XCTAssertFalse(limiter.warning("dropped a bad frame", key: "K")) }
        XCTAssertFalse(limiter.log(.debug, "below the level"), "below the logger's level: nothing")
        XCTAssertEqual(lines.withLock { $0 }, ["warning dropped a bad frame reason=x"])
    }

    /// A line names the module and place that asked for it, not the limiter's (the coordinator's
    /// lines read `[CaravanTransport]` when the limiter passed its own place on).
    func testALineNamesTheCallersModule() {
        let sources = LockedValue<[String]>([])
        let logger = Logger(label: "t") { _ in Capture(lines: LockedValue([]), sources: sources) }
        limiterLine(LogLimiter(logger: logger))
        XCTAssertEqual(sources.withLock { $0 }, ["CaravanTransportTests"])
    }

    private func limiterLine(_ limiter: LogLimiter) { limiter.info("job accepted") }

    private struct Capture: LogHandler {
        let lines: LockedValue<[String]>
        var sources = LockedValue<[String]>([])
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
                 function: String, line: UInt) {
            let fields = (metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            lines.withLock { $0.append("\(level) \(message)\(fields.isEmpty ? "" : " " + fields)") }
            sources.withLock { $0.append(source) }
        }
    }
}
