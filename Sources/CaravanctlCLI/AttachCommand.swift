import ArgumentParser
import CaravanCore
import Foundation

/// `caravanctl attach JOB`: receive the rest of a job's stream (after a client or coordinator restart).
struct Attach: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-attach to a job by id and stream the rest of its output.")

    @OptionGroup var connection: Connection

    @Argument(help: "The job id (as `caravanctl generate` or `status` shows it: job-...).", transform: JobID.parse)
    var jobID: JobID

    @Option(name: .customLong("received-tokens"), help: "Tokens already received (they are not sent again).")
    var receivedTokens = 0

    func run() async throws {
        var output = JobOutput()
        try await connection.client().attach(job: jobID, receivedTokens: receivedTokens) { output.show($0) }
        try output.check()
    }
}

extension JobID {
    /// The id a user typed, or a validation error that says what an id looks like.
    static func parse(_ text: String) throws -> JobID {
        guard let id = JobID(text) else {
            throw ValidationError("'\(text)' is not a job id (job- and up to \(JobID.maxSuffixLength) letters or digits)")
        }
        return id
    }
}
