import CaravanCore

extension SamplingParameters {
    /// Checks every value; throws `SamplingError.invalidParameter` naming the first bad one.
    public func validate() throws(SamplingError) {
        func fail(_ name: String, _ message: String) -> SamplingError {
            .invalidParameter(parameter: name, message: message)
        }
        guard temperature.isFinite, temperature >= 0 else {
            throw fail("temperature", "must be a finite number >= 0, got \(temperature)")
        }
        guard topK >= 0 else {
            throw fail("topK", "must be >= 0 (0 disables top-k), got \(topK)")
        }
        guard topP.isFinite, topP > 0, topP <= 1 else {
            throw fail("topP", "must be in (0, 1] (1 disables top-p), got \(topP)")
        }
        guard minP.isFinite, minP >= 0, minP <= 1 else {
            throw fail("minP", "must be in [0, 1] (0 disables min-p), got \(minP)")
        }
        guard repeatPenalty.isFinite, repeatPenalty > 0 else {
            throw fail("repeatPenalty", "must be a finite number > 0 (1 disables it), got \(repeatPenalty)")
        }
        guard repeatLastN >= -1 else {
            throw fail("repeatLastN", "must be >= -1 (-1 = whole history, 0 = off), got \(repeatLastN)")
        }
        guard frequencyPenalty.isFinite, Self.penaltyRange.contains(frequencyPenalty) else {
            throw fail("frequencyPenalty", "must be in [-2, 2] (0 disables it), got \(frequencyPenalty)")
        }
        guard presencePenalty.isFinite, Self.penaltyRange.contains(presencePenalty) else {
            throw fail("presencePenalty", "must be in [-2, 2] (0 disables it), got \(presencePenalty)")
        }
        guard maxTokens >= 1 else {
            throw fail("maxTokens", "must be >= 1, got \(maxTokens)")
        }
        guard (0...20).contains(topLogprobs) else {
            throw fail("topLogprobs", "must be in 0...20, got \(topLogprobs)")
        }
        if let index = stop.firstIndex(where: { $0.isEmpty }) {
            throw fail("stop", "stop strings must not be empty (entry \(index) is empty)")
        }
        guard stop.count <= Self.maxStopStrings else {
            throw fail("stop", "at most \(Self.maxStopStrings) stop strings, got \(stop.count)")
        }
        if let index = stop.firstIndex(where: { $0.utf8.count > Self.maxStopStringBytes }) {
            throw fail("stop", "a stop string may have at most \(Self.maxStopStringBytes) bytes (entry \(index) has \(stop[index].utf8.count))")
        }
    }

    /// The range of the frequency and presence penalties (OpenAI's).
    public static let penaltyRange: ClosedRange<Float> = -2...2
    /// Most stop strings one request may give (the matcher checks each at every token).
    public static let maxStopStrings = 16
    /// Longest stop string, UTF-8 bytes (the streamed text holds back up to this much).
    public static let maxStopStringBytes = 256
}
