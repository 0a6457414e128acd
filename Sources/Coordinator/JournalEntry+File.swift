import CaravanCore
import CaravanWire
import Foundation

// The journal file's JSON form of a typed ``JournalEntry``: one object per line, exactly as
// coordinators before typed entries wrote it (so a journal survives an upgrade either way):
//   {"submitted":{"_0":{"job":…,"sequence":…,"clientRequestID":…,"prompt":[…],"sampling":"<protobuf JSON>",
//                       "submittedMs":…,"owner":…}}}
//   {"token":{"job":…,"id":…,"text":…}}
//   {"ended":{"job":…,"state":"finished"|"cancelled"|"failed","reason":…,"text":…}}
//   {"epoch":{"_0":…}}
// `sampling` is `jobs.proto`'s `SamplingParameters` as protobuf JSON (seed resolved), an ended
// job's `reason` its `FinishReason` number, or a failure's message. A line that does not read as
// one of these (a bad job id, an unknown state or finish reason) throws, and the journal skips it
// as damaged.

extension JournalEntry: Codable {
    public init(from decoder: any Decoder) throws {
        switch try FileEntry(from: decoder) {
        case .submitted(let s): self = .submitted(try JournalSubmission(file: s))
        case let .token(job, id, text): self = .token(job: try Self.jobID(job), id: id, text: text)
        case let .ended(job, state, reason, text): self = .ended(job: try Self.jobID(job), outcome: try JobOutcome(
            fileState: state, reason: reason, text: text))
        case .epoch(let n): self = .epoch(n)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        let file: FileEntry
        switch self {
        case .submitted(let s): file = .submitted(try s.file())
        case let .token(job, id, text): file = .token(job: job.rawValue, id: id, text: text)
        case let .ended(job, outcome):
            let (state, reason, text) = outcome.file
            file = .ended(job: job.rawValue, state: state, reason: reason, text: text)
        case .epoch(let n): file = .epoch(n)
        }
        try file.encode(to: encoder)
    }

    private static func jobID(_ text: String) throws -> JobID {
        guard let id = JobID(text) else { throw JournalFileError.invalid("not a job id: \(text)") }
        return id
    }
}

/// Why a journal line does not read as an entry.
enum JournalFileError: Error, CustomStringConvertible {
    case invalid(String)

    var description: String {
        switch self {
        case .invalid(let why): "journal line: \(why)"
        }
    }
}

/// The file's shapes, as Swift's synthesized coding writes them.
private enum FileEntry: Codable {
    case submitted(FileSubmission)
    case token(job: String, id: Int32, text: String)
    case ended(job: String, state: String, reason: String, text: String)
    case epoch(UInt64)
}

private struct FileSubmission: Codable {
    var job: String
    var sequence: UInt64
    var clientRequestID: String
    var prompt: [Int32]
    var sampling: String
    var submittedMs: UInt64
    var owner: String?
}

extension JournalSubmission {
    fileprivate init(file s: FileSubmission) throws {
        guard let job = JobID(s.job) else { throw JournalFileError.invalid("not a job id: \(s.job)") }
        let wire: Caravan_V1_SamplingParameters
        do {
            wire = try Caravan_V1_SamplingParameters(jsonString: s.sampling)
        } catch {
            throw JournalFileError.invalid("sampling parameters of \(s.job): \(error)")
        }
        // An absent seed (no coordinator wrote one) is drawn, as the coordinator did for it then.
        self.init(job: job, sequence: SequenceID(s.sequence), clientRequestID: s.clientRequestID, prompt: s.prompt,
                  sampling: SamplingParameters(jobWire: wire), maxTokens: wire.maxTokens == 0 ? nil : Int(wire.maxTokens),
                  seed: wire.hasSeed ? wire.seed : UInt64.random(in: 0...UInt64.max), submittedMs: s.submittedMs, owner: s.owner)
    }

    fileprivate func file() throws -> FileSubmission {
        let json = try Caravan_V1_SamplingParameters(sampling, maxTokens: maxTokens, seed: seed).jsonString()
        return FileSubmission(job: job.rawValue, sequence: sequence.rawValue, clientRequestID: clientRequestID, prompt: prompt,
                              sampling: json, submittedMs: submittedMs, owner: owner)
    }
}

extension JobOutcome {
    fileprivate init(fileState state: String, reason: String, text: String) throws {
        switch state {
        case "finished", "cancelled":
            guard let code = Int(reason), let wire = Caravan_V1_FinishReason(rawValue: code),
                  let finish = JobFinishReason(wire: wire) else {
                throw JournalFileError.invalid("unknown finish reason \(reason)")
            }
            self = .finished(finish, text: text)
        case "failed":
            self = .failed(message: reason)
        default:
            throw JournalFileError.invalid("unknown end state \(state)")
        }
    }

    fileprivate var file: (state: String, reason: String, text: String) {
        switch self {
        case .finished(let reason, let text): (state == .cancelled ? "cancelled" : "finished", "\(reason.wire.rawValue)", text)
        case .failed(let message): ("failed", message, "")
        }
    }
}
