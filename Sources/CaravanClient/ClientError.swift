/// Why a client call failed.
public enum ClientError: Error, CustomStringConvertible, Sendable, Equatable {
    /// No answer within the time limit.
    case timeout(String)
    /// The socket failed.
    case transport(String)
    /// The coordinator answered with an error.
    case rejected(code: String, message: String)
    /// The request cannot be sent as it is (a value does not fit its wire field).
    case invalidRequest(String)
    /// The coordinator's answer about our job or request could not be read (a bad job id, an
    /// unknown finish reason or state, a token id out of range).
    case badReply(String)

    public var description: String {
        switch self {
        case .timeout(let what): "no answer from the coordinator: \(what)"
        case .transport(let why): "connection failed: \(why)"
        case let .rejected(code, message): "\(code): \(message)"
        case .invalidRequest(let why): "invalid request: \(why)"
        case .badReply(let why): "unreadable answer from the coordinator: \(why)"
        }
    }
}
