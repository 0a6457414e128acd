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
        var failure: String?
        try await connection.client().attach(jobID: jobID, receivedTokens: receivedTokens) { update in
            switch update {
            case .accepted: break
            case .token(_, let text): FileHandle.standardOutput.write(Data(text.utf8))
            case .finished(let reason, let text, let n):
                FileHandle.standardOutput.write(Data((text + "\n").utf8))
                FileHandle.standardError.write(Data("[\(n) tokens, \(reason)]\n".utf8))
            case .failed(let code, let message): failure = "\(code): \(message)"
            }
        }
        if let failure { throw ValidationError("the job failed: \(failure)") }
    }
}
