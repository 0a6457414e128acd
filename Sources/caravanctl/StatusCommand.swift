import ArgumentParser
import CaravanWire
import Coordinator
import SwiftProtobuf

/// `caravanctl status`: the cluster table, or one job's status.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the cluster (workers, jobs, plan history), or one job's status.")

    @OptionGroup var connection: Connection

    @Argument(help: "A job id (job-N): show only that job.")
    var jobID: String?

    @Flag(help: "Print the coordinator's answer as JSON.")
    var json = false

    @Flag(name: .customLong("finished"), help: "Also list ended jobs the coordinator still remembers.")
    var includeFinished = false

    func run() async throws {
        let client = try connection.client()
        if let jobID {
            let s = try await client.status(jobID: jobID)
            if json { return print(try s.jsonString(options: jsonOptions)) }
            print("\(s.jobID): \(s.state) prompt=\(s.promptTokens) completion=\(s.completionTokens) epoch=\(s.planEpoch)"
                + (s.hasError ? " error=\(s.error.message)" : "") + (s.waitingReason.isEmpty ? "" : " waiting=\(s.waitingReason)"))
            return
        }
        let s = try await client.clusterStatus(includeFinishedJobs: includeFinished)
        print(json ? try s.jsonString(options: jsonOptions) : AdminTables.status(s))
    }
}

/// JSON with the .proto field names and 64-bit numbers as numbers (zero values are left out).
let jsonOptions: JSONEncodingOptions = {
    var o = JSONEncodingOptions()
    o.alwaysPrintInt64sAsNumbers = true
    o.preserveProtoFieldNames = true
    return o
}()
