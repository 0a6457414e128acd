import ArgumentParser
import CaravanCore
import Sampling

/// Sampling flags, named as in llama.cpp's tools.
struct SamplingOptions: ParsableArguments {
    @Option(name: [.customShort("n"), .customLong("max-tokens")], help: "Most tokens to generate.")
    var maxTokens: Int = 256
    @Option(help: "Temperature; 0 = greedy.")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0 = off).")
    var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (1 = off).")
    var topP: Float = 0.95
    @Option(name: .customLong("min-p"), help: "Drop tokens below min-p x the best probability (0 = off).")
    var minP: Float = 0.05
    @Option(name: .customLong("repeat-penalty"), help: "Penalty for repeated tokens (1 = off).")
    var repeatPenalty: Float = 1.0
    @Option(name: .customLong("repeat-last-n"), help: "Tokens the penalties look back over (-1 = all).")
    var repeatLastN: Int = 64
    @Option(name: .customLong("frequency-penalty"), help: "Frequency penalty, -2 to 2 (0 = off).")
    var frequencyPenalty: Float = 0
    @Option(name: .customLong("presence-penalty"), help: "Presence penalty, -2 to 2 (0 = off).")
    var presencePenalty: Float = 0
    @Option(help: "Random seed: the same seed gives the same output.")
    var seed: UInt64 = 0
    @Option(name: .customLong("stop"), help: "Stop string (repeatable).")
    var stop: [String] = []

    var parameters: SamplingParameters {
        SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP,
                           repeatPenalty: repeatPenalty, repeatLastN: repeatLastN,
                           frequencyPenalty: frequencyPenalty, presencePenalty: presencePenalty,
                           seed: seed, maxTokens: maxTokens, stop: stop)
    }

    func validate() throws {
        do { try parameters.validate() } catch { throw ValidationError(error.description) }
    }
}
