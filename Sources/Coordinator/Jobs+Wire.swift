import CaravanCore
import CaravanWire
import Inference
import Sampling

extension SamplingParameters {
    /// The parameters of a job request (every field: the chain, the penalties and their window,
    /// stop strings, log-probabilities; read as ``SamplingParameters/init(jobWire:)`` reads them);
    /// `maxTokens` 0 means up to `contextLimit`; an absent seed is drawn at random.
    public init(wire w: Caravan_V1_SamplingParameters, contextLimit: Int) {
        self.init(jobWire: w)
        seed = w.hasSeed ? w.seed : UInt64.random(in: 0...UInt64.max)
        maxTokens = w.maxTokens == 0 ? contextLimit : Int(w.maxTokens)
    }
}

extension FinishReason {
    /// The wire value.
    public var wire: Caravan_V1_FinishReason {
        switch self {
        case .length, .contextFull: .length
        case .stop: .stopString
        case .endOfGeneration: .endOfSequence
        case .cancelled: .cancelled
        }
    }
}

/// Builders for the job messages the coordinator sends.
enum JobMessages {
    static func event(jobID: String, clientRequestID: String, sequence: UInt64,
                      _ body: Caravan_V1_JobEvent.OneOf_Event) -> Caravan_V1_Envelope.OneOf_Body {
        var e = Caravan_V1_JobEvent()
        e.jobID = jobID
        e.clientRequestID = clientRequestID
        e.sequence = sequence
        e.event = body
        return .jobEvent(e)
    }

    /// The end of a job that finished (or was cancelled): its reason, last text and counts;
    /// timings when known (a job restored from the journal has none).
    static func finished(_ reason: Caravan_V1_FinishReason, text: String, promptTokens: Int, completionTokens: Int,
                         totalMs: UInt32 = 0, timeToFirstTokenMs: UInt32 = 0) -> Caravan_V1_JobEvent.OneOf_Event {
        var f = Caravan_V1_JobFinished()
        f.reason = reason
        f.text = text
        f.promptTokens = UInt32(clamping: promptTokens)
        f.completionTokens = UInt32(clamping: completionTokens)
        f.totalMs = totalMs
        f.timeToFirstTokenMs = timeToFirstTokenMs
        return .finished(f)
    }

    static func error(_ code: Caravan_V1_JobErrorCode, _ message: String) -> Caravan_V1_JobEvent.OneOf_Event {
        var e = Caravan_V1_JobError()
        e.code = code
        e.message = message
        return .error(e)
    }
}
