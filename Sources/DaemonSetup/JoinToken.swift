import Foundation

/// Why a join token cannot be used.
public struct JoinTokenError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong with it.
    public let description: String
}

/// Everything a new worker needs to join a cluster, in one line (`caravanctl invite` prints it,
/// `caravan-worker --join TOKEN` reads it).
///
/// Text form: `caravan1:` followed by the unpadded base64url encoding of a small JSON object:
///
/// ```json
/// {"control": "tcp://10.0.0.1:7000", "clients": "tcp://10.0.0.1:7100", "coordinator_key": "<40 Z85 chars>"}
/// ```
///
/// `control` is required; `coordinator_key` is absent for a plain-mode (`--insecure`)
/// coordinator; `clients` is informational. New optional fields can be added without a new
/// version (a reader ignores keys it does not know, e.g. a worker credential issued with the
/// invitation); the prefix changes only for a change an older worker must not misread.
///
/// A token carries no secret today: the coordinator's public key and endpoints. It is still worth
/// handing over a trusted channel, since a forged one points a worker at another coordinator.
public struct JoinToken: Sendable, Equatable, Codable {
    /// The version prefix of the text form.
    public static let prefix = "caravan1:"
    /// Longest token text accepted (a token is a few hundred characters).
    public static let maxLength = 4096

    /// The coordinator's control endpoint workers connect to (`tcp://HOST:PORT`).
    public var control: String
    /// The coordinator's client endpoint (for `caravanctl` and clients; not needed by a worker).
    public var clients: String?
    /// The coordinator's CURVE public key (Z85, 40 characters); nil for a plain-mode coordinator.
    public var coordinatorKey: String?

    enum CodingKeys: String, CodingKey {
        case control
        case clients
        case coordinatorKey = "coordinator_key"
    }

    /// A token for a coordinator at `control` (and `clients`) with public key `coordinatorKey`
    /// (nil: plain mode); throws when a field is not valid.
    public init(control: String, clients: String? = nil, coordinatorKey: String?) throws(JoinTokenError) {
        self.control = control
        self.clients = clients
        self.coordinatorKey = coordinatorKey
        try validate()
    }

    /// Whether the coordinator runs without CURVE.
    public var insecure: Bool { coordinatorKey == nil }

    /// The one-line text form.
    public var text: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = (try? encoder.encode(self)) ?? Data()
        return Self.prefix + json.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Reads a token from its text form (surrounding white space ignored); every field is checked.
    public init(parsing text: String) throws(JoinTokenError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.count <= Self.maxLength else {
            throw JoinTokenError(description: "the join token is longer than \(Self.maxLength) characters")
        }
        guard trimmed.hasPrefix(Self.prefix) else {
            if let colon = trimmed.firstIndex(of: ":"), trimmed.hasPrefix("caravan") {
                throw JoinTokenError(description: "unsupported join token version '\(trimmed[..<colon])' (this worker reads \(Self.prefix.dropLast()))")
            }
            throw JoinTokenError(description: "not a join token (it must start with \(Self.prefix); `caravanctl invite` prints one)")
        }
        var base64 = String(trimmed.dropFirst(Self.prefix.count))
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard base64.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/") }) else {
            throw JoinTokenError(description: "the join token is damaged (characters outside base64url)")
        }
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64) else {
            throw JoinTokenError(description: "the join token is damaged (not base64url)")
        }
        do {
            self = try JSONDecoder().decode(JoinToken.self, from: data)
        } catch {
            throw JoinTokenError(description: "the join token is damaged (its JSON does not hold a control endpoint)")
        }
        try validate()
    }

    private func validate() throws(JoinTokenError) {
        for (name, endpoint) in [("control", control), ("clients", clients ?? "tcp://x:1")] {
            guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":"),
                  let port = Int(endpoint[endpoint.index(after: colon)...]), (1...65535).contains(port),
                  endpoint.count <= 512, !endpoint.contains(where: { $0.isWhitespace }) else {
                throw JoinTokenError(description: "the join token's \(name) endpoint '\(endpoint.prefix(80))' is not tcp://HOST:PORT")
            }
            let host = endpoint[endpoint.index(endpoint.startIndex, offsetBy: "tcp://".count)..<colon]
            guard !host.isEmpty, host != "*", host != "0.0.0.0", host != "[::]" else {
                throw JoinTokenError(description: "the join token's \(name) endpoint \(endpoint) names no host a worker can reach")
            }
        }
        if let key = coordinatorKey {
            guard key.count == 40, key.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                throw JoinTokenError(description: "the join token's coordinator key is not a 40-character Z85 key")
            }
        }
    }
}
