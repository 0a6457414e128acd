import ArgumentParser
import Foundation

/// `caravanctl attach JOB`: receive the rest of a job's stream (after a client or coordinator restart).
struct Attach: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-attach to a job by id and stream the rest of its output.")

    @OptionGroup var connection: Connection

    @Argument(help: "The job id (job-N).")
    var jobID: String

    @Option(name: .customLong("received-tokens"), help: "Tokens already received (they are not sent again).")
    var receivedTokens = 0

    func run() async throws {
        var output = JobOutput()
        try await connection.client().attach(jobID: jobID, receivedTokens: receivedTokens) { output.show($0) }
        try output.check()
    }
}
