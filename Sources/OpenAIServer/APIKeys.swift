import Foundation
import Hummingbird

/// The API keys `caravan-openai` accepts (`Authorization: Bearer KEY`), read from a file: one key
/// per line (the first word; `#` lines and blank lines skipped), several keys so that each user or
/// service has its own and one can be withdrawn alone.
public struct APIKeys: Sendable, Equatable {
    /// Why a key file cannot be used.
    public struct Failure: Error, CustomStringConvertible, Sendable, Equatable {
        /// What is wrong, naming the file and line.
        public let description: String
    }

    /// Shortest key accepted: a guessable key is no key.
    public static let minimumLength = 16

    private let keys: [[UInt8]]

    /// Keys from `text` (the contents of `file`, named in errors).
    public init(text: String, file: String = "the API key file") throws(Failure) {
        var keys: [[UInt8]] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let key = String(trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })[0])
            guard key.utf8.count >= Self.minimumLength, key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw Failure(description: "\(file):\(n + 1): an API key is at least \(Self.minimumLength) printable ASCII characters")
            }
            keys.append(Array(key.utf8))
        }
        guard !keys.isEmpty else { throw Failure(description: "\(file) holds no API key") }
        self.keys = keys
    }

    /// Keys from the file at `path`.
    public init(file path: String) throws(Failure) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Failure(description: "cannot read the API key file \(path): \(error.localizedDescription)")
        }
        try self.init(text: text, file: path)
    }

    /// How many keys there are.
    public var count: Int { keys.count }

    /// Whether `authorization` (the header's value) is `Bearer` and a known key. Compares every
    /// key in time independent of where the bytes differ.
    public func accepts(authorization: String?) -> Bool {
        guard let authorization, authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else { return false }
        let given = Array(authorization.dropFirst(7).trimmingCharacters(in: .whitespaces).utf8)
        var found = false
        for key in keys where Self.equal(key, given) { found = true }
        return found
    }

    private static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// Refuses requests without a valid API key with 401 and OpenAI's error JSON (before the body is
/// read or anything reaches the coordinator).
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: APIKeys

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        guard keys.accepts(authorization: request.headers[.authorization]) else {
            var response = OpenAIErrorMiddleware<Context>.render(request.headers[.authorization] == nil ? .missingAPIKey : .invalidAPIKey)
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return try await next(request, context)
    }
}
