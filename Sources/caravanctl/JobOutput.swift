import ArgumentParser
import CaravanClient
import Foundation

/// How `generate` and `attach` show a job's stream: the text to standard output as it comes, the
/// token count and finish reason to standard error, and a failure as the command's error.
struct JobOutput {
    /// The failure the coordinator reported (`code: message`), if any.
    private(set) var failure: String?

    /// Shows one update.
    mutating func show(_ update: JobUpdate) {
        switch update {
        case .accepted: break
        case .token(_, let text): FileHandle.standardOutput.write(Data(text.utf8))
        case .finished(let reason, let text, let n):
            FileHandle.standardOutput.write(Data((text + "\n").utf8))
            FileHandle.standardError.write(Data("[\(n) tokens, \(reason)]\n".utf8))
        case .failed(let code, let message): failure = "\(code): \(message)"
        }
    }

    /// Throws when the job failed.
    func check() throws {
        if let failure { throw ValidationError("the job failed: \(failure)") }
    }
}
