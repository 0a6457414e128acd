import CaravanCore

// A job request (CaravanCore's `JobRequest`, `SamplingParameters`) to and from `jobs.proto`'s
// `JobSubmit` and `SamplingParameters`. On the wire a zero means "off" (top-p and the repeat
// penalty: 0 reads as 1), an absent seed "the coordinator draws one", max_tokens 0 "up to the
// context limit" and an absent repeat_last_n the default window (64).

extension SamplingParameters {
    /// The sampling chain, penalties, stop strings and log-probabilities of a job's wire
    /// parameters; `maxTokens` and `seed` keep their defaults (the caller resolves them: see
    /// ``JobRequest/init(wire:)`` and the coordinator's admission). Values are not range-checked
    /// here: `validate()` (in `Sampling`) does that.
    public init(jobWire w: Caravan_V1_SamplingParameters) {
        self.init(temperature: w.temperature, topK: Int(w.topK), topP: w.topP == 0 ? 1 : w.topP, minP: w.minP,
                  repeatPenalty: w.repetitionPenalty == 0 ? 1 : w.repetitionPenalty,
                  repeatLastN: w.hasRepeatLastN ? Int(truncatingIfNeeded: w.repeatLastN) : SamplingParameters().repeatLastN,
                  frequencyPenalty: w.frequencyPenalty, presencePenalty: w.presencePenalty, stop: w.stop)
        logprobs = w.logprobs
        topLogprobs = Int(w.topLogprobs)
    }
}

extension Caravan_V1_SamplingParameters {
    /// The wire parameters of `sampling` (its `maxTokens` and `seed` are not read), with
    /// `maxTokens` (nil = 0, up to the context limit) and `seed` (nil = absent). Throws when a value
    /// does not fit its wire field (a negative top-k or top-logprobs count, max tokens outside
    /// 1...2^32-1).
    public init(_ sampling: SamplingParameters, maxTokens: Int?, seed: UInt64?) throws(WireError) {
        self.init()
        guard let topK = UInt32(exactly: sampling.topK) else {
            throw .invalidField("sampling.top_k", reason: "must be in 0...\(UInt32.max), got \(sampling.topK)")
        }
        guard let topLogprobs = UInt32(exactly: sampling.topLogprobs) else {
            throw .invalidField("sampling.top_logprobs", reason: "must be >= 0, got \(sampling.topLogprobs)")
        }
        temperature = sampling.temperature
        self.topK = topK
        topP = sampling.topP
        minP = sampling.minP
        repetitionPenalty = sampling.repeatPenalty
        repeatLastN = Int64(sampling.repeatLastN)
        frequencyPenalty = sampling.frequencyPenalty
        presencePenalty = sampling.presencePenalty
        stop = sampling.stop
        logprobs = sampling.logprobs
        self.topLogprobs = topLogprobs
        if let seed { self.seed = seed }
        if let maxTokens {
            guard maxTokens >= 1, let n = UInt32(exactly: maxTokens) else {
                throw .invalidField("sampling.max_tokens", reason: "must be in 1...\(UInt32.max), got \(maxTokens)")
            }
            self.maxTokens = n
        }
    }
}

extension Caravan_V1_JobSubmit {
    /// The wire message of `request`; throws when a value does not fit its wire field (see
    /// ``Caravan_V1_SamplingParameters/init(_:maxTokens:seed:)``; a negative token id).
    public init(_ request: JobRequest) throws(WireError) {
        self.init()
        clientRequestID = request.clientRequestID
        model = request.model ?? ""
        switch request.input {
        case .prompt(let text):
            input = .prompt(text)
        case .chat(let turns):
            var chat = Caravan_V1_ChatConversation()
            chat.messages = turns.map { turn in
                var m = Caravan_V1_ChatMessage()
                m.role = turn.role
                m.content = turn.content
                return m
            }
            input = .chat(chat)
        case .tokens(let ids):
            var t = Caravan_V1_TokenIDs()
            t.ids.reserveCapacity(ids.count)
            for (i, id) in ids.enumerated() {
                guard let u = UInt32(exactly: id) else {
                    throw .invalidField("job_submit.prompt_tokens.ids[\(i)]", reason: "\(id) is not a token id")
                }
                t.ids.append(u)
            }
            input = .promptTokens(t)
        }
        sampling = try Caravan_V1_SamplingParameters(request.sampling, maxTokens: request.maxTokens, seed: request.seed)
    }
}

extension JobRequest {
    /// The request a wire message describes; throws when the input is absent or a token id does
    /// not fit `Int32`. Sampling values are not range-checked here (the coordinator's admission
    /// does, with `validate()`).
    public init(wire m: Caravan_V1_JobSubmit) throws(WireError) {
        let input: JobInput
        switch m.input {
        case .prompt(let text)?: input = .prompt(text)
        case .chat(let c)?: input = .chat(c.messages.map { ChatTurn(role: $0.role, content: $0.content) })
        case .promptTokens(let t)?:
            var ids: [Int32] = []
            ids.reserveCapacity(t.ids.count)
            for (i, id) in t.ids.enumerated() {
                guard let s = Int32(exactly: id) else {
                    throw .invalidField("job_submit.prompt_tokens.ids[\(i)]", reason: "\(id) is not a token id")
                }
                ids.append(s)
            }
            input = .tokens(ids)
        case nil: throw .missingField("job_submit.input")
        }
        let w = m.sampling
        self.init(input: input, clientRequestID: m.clientRequestID, model: m.model.isEmpty ? nil : m.model,
                  sampling: SamplingParameters(jobWire: w), maxTokens: w.maxTokens == 0 ? nil : Int(w.maxTokens),
                  seed: w.hasSeed ? w.seed : nil)
    }
}
