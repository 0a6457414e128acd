import CaravanCore
import Foundation

// OpenAI's JSON request and response bodies, their validation, and their conversion to and from
// Caravan's job requests and events (the only place the two meet).

/// A string or an array of strings (`prompt`, `stop`).
public enum StringOrArray: Decodable, Equatable, Sendable {
    case one(String)
    case many([String])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .one(s)
        } else {
            self = .many(try c.decode([String].self))
        }
    }

    var values: [String] {
        switch self {
        case .one(let s): [s]
        case .many(let a): a
        }
    }
}

/// `stream_options`.
public struct StreamOptions: Decodable, Equatable, Sendable {
    /// Send a last chunk with `usage` (and no choices) before `[DONE]`.
    public var include_usage: Bool?
}

/// The sampling fields shared by both endpoints.
public struct SamplingFields: Decodable, Equatable, Sendable {
    public var model: String?
    public var max_tokens: Int?
    /// Chat's newer name for `max_tokens`.
    public var max_completion_tokens: Int?
    public var temperature: Double?
    public var top_p: Double?
    /// Extension (not in OpenAI's API): keep the k most likely tokens.
    public var top_k: Int?
    /// Extension: min-p sampling.
    public var min_p: Double?
    /// Extension: llama.cpp-style repetition penalty (1 = off).
    public var repetition_penalty: Double?
    /// Extension (llama.cpp's server): the penalty window in tokens (64 when absent; 0 = off,
    /// -1 = the whole sequence).
    public var repeat_last_n: Int?
    public var n: Int?
    public var stream: Bool?
    public var stream_options: StreamOptions?
    public var stop: StringOrArray?
    public var seed: Int64?
    public var presence_penalty: Double?
    public var frequency_penalty: Double?
    public var logit_bias: [String: Double]?
    public var best_of: Int?
    public var echo: Bool?
    public var suffix: String?
    public var tools: [JSONValue]?
    public var response_format: JSONValue?

    /// OpenAI's range for the presence and frequency penalties.
    static let penaltyRange = -2.0...2.0

    /// Checks the fields and converts them to a job request for `input` (its sampling chain, max
    /// tokens, stop strings, seed); throws naming the first field that is invalid or that Caravan
    /// cannot honour.
    func jobRequest(_ input: JobInput, contextMaxTokens: Int = Int(UInt32.max)) throws(OpenAIError) -> JobRequest {
        // OpenAI's defaults: temperature 1, and no truncation or penalty unless asked for.
        var p = SamplingParameters(temperature: 1, topK: 0, topP: 1, minP: 0, repeatPenalty: 1)
        if let t = temperature {
            guard t.isFinite, t >= 0, t <= 2 else { throw .invalid("temperature must be between 0 and 2, got \(t)", param: "temperature") }
            p.temperature = Float(t)
        }
        if let v = top_p {
            guard v.isFinite, v > 0, v <= 1 else { throw .invalid("top_p must be in (0, 1], got \(v)", param: "top_p") }
            p.topP = Float(v)
        }
        if let k = top_k {
            guard k >= 0, k <= Int(UInt32.max) else { throw .invalid("top_k must be at least 0, got \(k)", param: "top_k") }
            p.topK = k
        }
        if let m = min_p {
            guard m.isFinite, m >= 0, m <= 1 else { throw .invalid("min_p must be in [0, 1], got \(m)", param: "min_p") }
            p.minP = Float(m)
        }
        if let r = repetition_penalty {
            guard r.isFinite, r > 0 else { throw .invalid("repetition_penalty must be positive, got \(r)", param: "repetition_penalty") }
            p.repeatPenalty = Float(r)
        }
        if let n = repeat_last_n {
            guard n >= -1, n <= Int(Int32.max) else {
                throw .invalid("repeat_last_n must be -1 (the whole sequence), 0 (off) or a window in tokens, got \(n)", param: "repeat_last_n")
            }
            p.repeatLastN = n
        }
        if let v = presence_penalty {
            guard v.isFinite, Self.penaltyRange.contains(v) else {
                throw .invalid("presence_penalty must be between -2 and 2, got \(v)", param: "presence_penalty")
            }
            p.presencePenalty = Float(v)
        }
        if let v = frequency_penalty {
            guard v.isFinite, Self.penaltyRange.contains(v) else {
                throw .invalid("frequency_penalty must be between -2 and 2, got \(v)", param: "frequency_penalty")
            }
            p.frequencyPenalty = Float(v)
        }
        if max_tokens != nil, max_completion_tokens != nil, max_tokens != max_completion_tokens {
            throw .invalid("max_tokens and max_completion_tokens differ; give one", param: "max_tokens")
        }
        var maxTokens: Int?
        if let m = max_tokens ?? max_completion_tokens {
            let param = max_tokens != nil ? "max_tokens" : "max_completion_tokens"
            guard m >= 1, m <= contextMaxTokens else { throw .invalid("\(param) must be at least 1, got \(m)", param: param) }
            maxTokens = m
        }
        if let n, n != 1 { throw .invalid("only n = 1 is supported, got \(n)", param: "n") }
        if let b = best_of, b != 1 { throw .invalid("only best_of = 1 is supported, got \(b)", param: "best_of") }
        if let stop {
            let values = stop.values
            guard !values.contains(where: \.isEmpty) else { throw .invalid("stop strings must not be empty", param: "stop") }
            p.stop = values
        }
        if let bias = logit_bias, !bias.isEmpty { throw .invalid("logit_bias is not supported by this server", param: "logit_bias") }
        if echo == true { throw .invalid("echo is not supported by this server", param: "echo") }
        if let s = suffix, !s.isEmpty { throw .invalid("suffix is not supported by this server", param: "suffix") }
        if let t = tools, !t.isEmpty { throw .invalid("tools are not supported by this server", param: "tools") }
        if let f = response_format, f != .object(["type": .string("text")]) {
            throw .invalid("only response_format {\"type\": \"text\"} is supported", param: "response_format")
        }
        return JobRequest(input: input, sampling: p, maxTokens: maxTokens, seed: seed.map { UInt64(bitPattern: $0) })
    }
}

/// Any JSON value (for fields that are only checked for presence or a simple shape).
public indirect enum JSONValue: Decodable, Equatable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

/// The body of `POST /v1/completions`.
public struct CompletionRequest: Decodable, Equatable, Sendable {
    public var prompt: StringOrArray?
    /// Completions' `logprobs` is a count of alternatives.
    public var logprobs: Int?
    public var sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case prompt, logprobs }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try c.decodeIfPresent(StringOrArray.self, forKey: .prompt)
        logprobs = try c.decodeIfPresent(Int.self, forKey: .logprobs)
        sampling = try SamplingFields(from: decoder)
    }

    /// Validates the request and converts it to a job (`clientRequestID` set by the caller).
    public func jobRequest() throws(OpenAIError) -> JobRequest {
        guard let prompt else { throw .invalid("prompt is required", param: "prompt") }
        let text: String
        switch prompt {
        case .one(let s): text = s
        case .many(let a):
            guard a.count == 1 else { throw .invalid("exactly one prompt is supported, got \(a.count)", param: "prompt") }
            text = a[0]
        }
        guard !text.isEmpty else { throw .invalid("prompt must not be empty", param: "prompt") }
        if logprobs != nil { throw .invalid("logprobs are not supported by this server", param: "logprobs") }
        return try sampling.jobRequest(.prompt(text))
    }
}

/// One chat message of a request.
public struct ChatMessageIn: Decodable, Equatable, Sendable {
    /// A content part (only `text` parts are supported).
    public struct Part: Decodable, Equatable, Sendable {
        public var type: String
        public var text: String?
    }

    /// A string, an array of parts, or null.
    public enum Content: Decodable, Equatable, Sendable {
        case text(String)
        case parts([Part])
        case none

        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .none }
            else if let s = try? c.decode(String.self) { self = .text(s) }
            else { self = .parts(try c.decode([Part].self)) }
        }
    }

    public var role: String
    public var content: Content?
}

/// The body of `POST /v1/chat/completions`.
public struct ChatCompletionRequest: Decodable, Equatable, Sendable {
    public var messages: [ChatMessageIn]?
    /// Chat's `logprobs` is a flag (with `top_logprobs`).
    public var logprobs: Bool?
    public var top_logprobs: Int?
    public var sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case messages, logprobs, top_logprobs }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messages = try c.decodeIfPresent([ChatMessageIn].self, forKey: .messages)
        logprobs = try c.decodeIfPresent(Bool.self, forKey: .logprobs)
        top_logprobs = try c.decodeIfPresent(Int.self, forKey: .top_logprobs)
        sampling = try SamplingFields(from: decoder)
    }

    /// The roles the model's chat template renders (`developer` is read as `system`).
    static let roles: [String: String] = ["system": "system", "developer": "system", "user": "user", "assistant": "assistant"]

    /// Validates the request and converts it to a job (`clientRequestID` set by the caller).
    public func jobRequest() throws(OpenAIError) -> JobRequest {
        guard let messages, !messages.isEmpty else { throw .invalid("messages must be a non-empty array", param: "messages") }
        var chat: [ChatTurn] = []
        for (i, m) in messages.enumerated() {
            guard let role = Self.roles[m.role] else {
                throw .invalid("messages[\(i)].role '\(m.role)' is not one of system, developer, user, assistant", param: "messages[\(i)].role")
            }
            var message = ChatTurn(role: role, content: "")
            switch m.content ?? .none {
            case .text(let s): message.content = s
            case .none: message.content = ""
            case .parts(let parts):
                var text = ""
                for p in parts {
                    guard p.type == "text", let t = p.text else {
                        throw .invalid("messages[\(i)].content: only text parts are supported, got '\(p.type)'", param: "messages[\(i)].content")
                    }
                    text += t
                }
                message.content = text
            }
            chat.append(message)
        }
        if logprobs == true || (top_logprobs ?? 0) > 0 {
            throw .invalid("logprobs are not supported by this server", param: "logprobs")
        }
        return try sampling.jobRequest(.chat(chat))
    }
}

/// Decodes a request body, turning JSON errors into 400s that say where the problem is.
public func decodeRequest<T: Decodable>(_ type: T.Type, from data: Data) throws(OpenAIError) -> T {
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let error as DecodingError {
        switch error {
        case .dataCorrupted(let c) where c.codingPath.isEmpty:
            throw .invalid("the request body is not valid JSON")
        case .dataCorrupted(let c), .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c):
            let path = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            throw .invalid("invalid field \(path.isEmpty ? "(body)" : path): \(c.debugDescription)", param: path.isEmpty ? nil : path)
        @unknown default:
            throw .invalid("the request body could not be read: \(error)")
        }
    } catch {
        throw .invalid("the request body could not be read: \(error)")
    }
}

// MARK: - Responses

/// OpenAI's name for a Caravan finish reason.
public func finishReasonName(_ reason: JobFinishReason) -> String {
    switch reason {
    case .length: "length"
    case .endOfSequence, .stopString, .cancelled: "stop"
    }
}

/// Token counts of a finished job.
public struct Usage: Encodable, Equatable, Sendable {
    public var prompt_tokens: Int
    public var completion_tokens: Int
    public var total_tokens: Int

    public init(prompt: Int, completion: Int) {
        prompt_tokens = prompt
        completion_tokens = completion
        total_tokens = prompt + completion
    }
}

/// `GET /v1/models`.
public struct ModelList: Encodable, Sendable {
    public struct Model: Encodable, Sendable {
        public var id: String
        public var object = "model"
        public var created: Int
        public var owned_by = "caravan"
    }
    public var object = "list"
    public var data: [Model]

    public init(names: [String], created: Int) {
        data = names.map { Model(id: $0, created: created) }
    }
}

/// The kind of endpoint a response is for.
public enum CompletionKind: Sendable {
    case text, chat
}

/// Builds the response bodies and stream chunks of one completion.
public struct CompletionRenderer: Sendable {
    public var kind: CompletionKind
    public var id: String
    public var model: String
    public var created: Int

    public init(kind: CompletionKind, id: String, model: String, created: Int) {
        self.kind = kind
        self.id = id
        self.model = model
        self.created = created
    }

    private struct Choice: Encodable {
        var kind: CompletionKind
        var text: String?
        var role: Bool
        var finishReason: String?
        var whole: Bool

        enum Keys: String, CodingKey { case index, text, message, delta, logprobs, finish_reason }
        enum MessageKeys: String, CodingKey { case role, content }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(0, forKey: .index)
            switch kind {
            case .text:
                try c.encode(text ?? "", forKey: .text)
            case .chat:
                var m = c.nestedContainer(keyedBy: MessageKeys.self, forKey: whole ? .message : .delta)
                if role { try m.encode("assistant", forKey: .role) }
                if let text { try m.encode(text, forKey: .content) }
            }
            try c.encodeNil(forKey: .logprobs)
            try c.encode(finishReason, forKey: .finish_reason)
        }
    }

    private struct Body: Encodable {
        var id: String
        var object: String
        var created: Int
        var model: String
        var choices: [Choice]
        var usage: Usage?
    }

    private func body(object: String, choices: [Choice], usage: Usage?) -> Data {
        let b = Body(id: id, object: object, created: created, model: model, choices: choices, usage: usage)
        // Encoding plain strings and numbers cannot fail.
        return (try? OpenAIJSON.encoder.encode(b)) ?? Data("{}".utf8)
    }

    /// The whole (non-streamed) response.
    public func response(text: String, finishReason: String, usage: Usage) -> Data {
        body(object: kind == .chat ? "chat.completion" : "text_completion",
             choices: [Choice(kind: kind, text: text, role: true, finishReason: finishReason, whole: true)], usage: usage)
    }

    private var chunkObject: String { kind == .chat ? "chat.completion.chunk" : "text_completion" }

    /// A stream chunk carrying `text` (chat: `first` adds the assistant role) or, with
    /// `finishReason`, the last chunk.
    public func chunk(text: String?, first: Bool = false, finishReason: String? = nil) -> Data {
        body(object: chunkObject, choices: [Choice(kind: kind, text: text, role: first && kind == .chat,
                                                   finishReason: finishReason, whole: false)], usage: nil)
    }

    /// The chunk `stream_options.include_usage` asks for: no choices, the usage.
    public func usageChunk(_ usage: Usage) -> Data {
        body(object: chunkObject, choices: [], usage: usage)
    }

    /// One Server-Sent Events frame.
    public static func event(_ json: Data) -> Data {
        Data("data: ".utf8) + json + Data("\n\n".utf8)
    }

    /// The stream's end marker.
    public static let done = Data("data: [DONE]\n\n".utf8)
}
