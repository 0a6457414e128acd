import Foundation

/// A failure answered to an HTTP client as OpenAI's error JSON:
/// `{"error": {"message", "type", "param", "code"}}` with ``status``.
public struct OpenAIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The HTTP status code (400, 401, 404, 413, 429, 500, 503).
    public var status: Int
    /// What went wrong, for people.
    public var message: String
    /// OpenAI's error type, e.g. `invalid_request_error`.
    public var type: String
    /// The request field at fault, if one is.
    public var param: String?
    /// A machine-readable code, if any (e.g. `model_not_found`).
    public var code: String?

    /// Creates an error answered with `status`.
    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status) \(type): \(message)" }

    /// 400: an invalid parameter (`param` names it).
    public static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> OpenAIError {
        OpenAIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// 404: no such route.
    public static func notFound(_ message: String) -> OpenAIError {
        OpenAIError(status: 404, message: message, type: "invalid_request_error", code: "not_found")
    }

    /// 404: the request names a model this server does not serve.
    public static func modelNotFound(_ model: String, served: String) -> OpenAIError {
        OpenAIError(status: 404, message: "The model '\(model)' does not exist; this server serves '\(served)'.",
                    type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    /// 413: the request body is larger than `limit` bytes.
    public static func tooLarge(limit: Int) -> OpenAIError {
        OpenAIError(status: 413, message: "The request body is larger than \(limit) bytes.",
                    type: "invalid_request_error", code: "request_too_large")
    }

    /// 401: no `Authorization: Bearer` header.
    public static let missingAPIKey = OpenAIError(
        status: 401, message: "You didn't provide an API key: send it as 'Authorization: Bearer KEY'.",
        type: "invalid_request_error", code: "missing_api_key")

    /// 401: a key that is not in the server's API key file.
    public static let invalidAPIKey = OpenAIError(
        status: 401, message: "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key")

    /// 429: too many requests at once (`limit`), or the coordinator's per-client job limit.
    public static func tooManyRequests(_ message: String) -> OpenAIError {
        OpenAIError(status: 429, message: message, type: "requests", code: "rate_limit_exceeded")
    }

    /// 503: the coordinator could not be reached or did not answer in time.
    public static func unavailable(_ message: String) -> OpenAIError {
        OpenAIError(status: 503, message: message, type: "server_error", code: "coordinator_unavailable")
    }

    /// 500: anything else.
    public static func internalError(_ message: String) -> OpenAIError {
        OpenAIError(status: 500, message: message, type: "server_error", code: "internal_error")
    }

    private struct Body: Encodable {
        struct Detail: Encodable {
            var message: String
            var type: String
            var param: String?
            var code: String?

            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(message, forKey: .message)
                try c.encode(type, forKey: .type)
                try c.encode(param, forKey: .param) // explicit null, as OpenAI sends
                try c.encode(code, forKey: .code)
            }

            enum CodingKeys: String, CodingKey { case message, type, param, code }
        }
        var error: Detail
    }

    /// The JSON body: `{"error": {...}}`.
    public var json: Data {
        let body = Body(error: .init(message: message, type: type, param: param, code: code))
        return (try? OpenAIJSON.encoder.encode(body)) ?? Data(#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#.utf8)
    }
}

/// The JSON coders the server uses (sorted keys, for stable output).
enum OpenAIJSON {
    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
