import ArgumentParser
import CaravanClient
import CaravanCore
import Foundation

/// How `generate` and `attach` show a job's stream: the text to standard output as it comes, the
/// token count and finish reason to standard error, and a failure as the command's error.
struct JobOutput {
    /// The failure the coordinator reported (`code: message`), if any.
    private(set) var failure: String?

    /// Shows one event.
    mutating func show(_ event: JobEvent) {
        switch event {
        case .accepted: break
        case .token(let token): FileHandle.standardOutput.write(Data(token.text.utf8))
        case .finished(let end):
            FileHandle.standardOutput.write(Data((end.text + "\n").utf8))
            FileHandle.standardError.write(Data("[\(end.completionTokens) tokens, \(end.reason)]\n".utf8))
        case .failed(let f): failure = f.description
        }
    }

    /// Throws when the job failed.
    func check() throws {
        if let failure { throw ValidationError("the job failed: \(failure)") }
    }
}
