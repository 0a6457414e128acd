import CaravanCore
import Foundation
import Logging

/// Keeps the log lines of an in-process cluster in memory, for assertions on what a daemon
/// reported (`"worker-1 is slow"`) and for the failure message of a test. Set
/// `CARAVAN_TEST_LOGS=1` to also print them.
public final class LogRecorder: Sendable {
    private let lines = LockedValue<[String]>([])
    private let echo = ProcessInfo.processInfo.environment["CARAVAN_TEST_LOGS"] == "1"

    /// An empty recorder.
    public init() {}

    /// A logger named `label` writing here (level info and above).
    public func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { label in Handler(label: label, recorder: self) }
        logger.logLevel = .info
        return logger
    }

    /// Every line so far.
    public var text: String { lines.withLock { $0.joined(separator: "\n") } }

    /// Whether a line contains `fragment`.
    public func contains(_ fragment: String) -> Bool { lines.withLock { $0.contains { $0.contains(fragment) } } }

    func record(_ line: String) {
        lines.withLock { $0.append(line) }
        if echo { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }

    private struct Handler: LogHandler {
        let label: String
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            let all = self.metadata.merging(metadata ?? [:]) { _, new in new }
            let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            recorder.record("\(level) [\(label)] \(message)\(fields.isEmpty ? "" : " " + fields)")
        }
    }
}
