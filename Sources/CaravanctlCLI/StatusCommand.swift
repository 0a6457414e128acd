import ArgumentParser
import CaravanCore
import CaravanWire
import Foundation
import SwiftProtobuf

/// `caravanctl status`: the cluster table, or one job's status.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the cluster (workers, jobs, plan history), or one job's status.")

    @OptionGroup var connection: Connection

    @Argument(help: "A job id (job-...): show only that job.", transform: JobID.parse)
    var jobID: JobID?

    @Flag(help: "Print the coordinator's answer as JSON.")
    var json = false

    @Flag(name: .customLong("finished"), help: "Also list ended jobs the coordinator still remembers.")
    var includeFinished = false

    @Flag(help: "Redraw the status in place every --interval seconds until interrupted (Ctrl-C).")
    var watch = false

    @Option(help: "Seconds between redraws with --watch.")
    var interval = 1.0

    @Option(help: "With --watch: stop after this many redraws (default: never).")
    var count: Int?

    func validate() throws {
        guard interval.isFinite, interval >= 0.1, interval <= 3600 else { throw ValidationError("--interval is 0.1 to 3600 seconds") }
        if let count, count < 1 { throw ValidationError("--count must be positive") }
        if watch, json || jobID != nil { throw ValidationError("--watch shows the cluster table (not with --json or a job id)") }
    }

    func run() async throws {
        let client = try connection.client()
        if let jobID {
            let s = try await client.status(job: jobID)
            if json { return print(try Caravan_V1_JobStatus(s).jsonString(options: jsonOptions)) }
            print("\(s.job): \(s.state) prompt=\(s.promptTokens) completion=\(s.completionTokens) epoch=\(s.planEpoch)"
                + (s.failure.map { " error=\($0.message)" } ?? "") + (s.waitingReason.isEmpty ? "" : " waiting=\(s.waitingReason)"))
            return
        }
        guard watch else {
            let s = try await client.clusterStatus(includeFinishedJobs: includeFinished)
            return print(json ? try Caravan_V1_ClusterStatus(s).jsonString(options: jsonOptions) : AdminTables.status(s))
        }
        var screen = StatusScreen(terminal: isatty(STDOUT_FILENO) == 1)
        var frames = 0
        while count.map({ frames < $0 }) ?? true {
            if frames > 0 { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
            let body: String
            do {
                body = AdminTables.status(try await client.clusterStatus(includeFinishedJobs: includeFinished))
            } catch {
                // The coordinator may be restarting: keep watching.
                body = "cannot reach the coordinator: \(error)"
            }
            let stamp = String(ISO8601DateFormatter().string(from: Date()).dropFirst(11).prefix(8))
            screen.draw("every \(interval) s  \(stamp)Z  (Ctrl-C to stop)\n\n" + body)
            frames += 1
        }
    }
}

/// Draws frames of text over each other on a terminal (cursor home, each line cleared to its end,
/// the rest of the screen cleared), so a watch redraws in place without flicker; elsewhere (a
/// pipe, a file) frames follow each other, separated by a blank line.
struct StatusScreen {
    /// Whether standard output is a terminal.
    let terminal: Bool
    private var first = true

    init(terminal: Bool) { self.terminal = terminal }

    /// The escape sequences and text of one frame.
    static func frame(_ text: String, terminal: Bool, first: Bool) -> String {
        guard terminal else { return (first ? "" : "\n") + text + (text.hasSuffix("\n") ? "" : "\n") }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        // ESC[H: cursor home; ESC[K: clear to the end of the line; ESC[J: clear below.
        return (first ? "\u{1B}[2J" : "") + "\u{1B}[H" + lines.map { $0 + "\u{1B}[K" }.joined(separator: "\n") + "\u{1B}[J"
    }

    /// Draws `text` over the previous frame.
    mutating func draw(_ text: String) {
        FileHandle.standardOutput.write(Data(Self.frame(text, terminal: terminal, first: first).utf8))
        first = false
    }
}

/// JSON with the .proto field names and 64-bit numbers as numbers (zero values are left out).
let jsonOptions: JSONEncodingOptions = {
    var o = JSONEncodingOptions()
    o.alwaysPrintInt64sAsNumbers = true
    o.preserveProtoFieldNames = true
    return o
}()
