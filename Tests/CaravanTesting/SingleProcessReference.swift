import CaravanCore
import GGUF
import Inference
import Llama
import Tokenizer

/// What one process with every layer generates: the tokens a cluster must reproduce.
public enum SingleProcessReference {
    /// Generated token ids of each prompt (run together in one batch) under `parameters`.
    public static func generate(modelPath: String, prompts: [[Int32]], parameters: SamplingParameters,
                                contextLimit: Int = 256) async throws -> [[Int32]] {
        let file = try GGUFFile(path: modelPath)
        let tokenizer = try Tokenizer(gguf: file)
        let stage = try LlamaStage(file: file, contextLimit: contextLimit, runner: ComputeThreadPool(threads: 1))
        let scheduler = BatchScheduler(engine: LocalEngine(stage: stage))
        var sessions: [GenerationSession] = []
        for (i, prompt) in prompts.enumerated() {
            let session = try GenerationSession(sequence: SequenceID(UInt64(i + 1)), prompt: prompt, parameters: parameters,
                                                tokenizer: tokenizer, contextLimit: contextLimit)
            sessions.append(session)
            scheduler.add(session)
        }
        while scheduler.hasWork { _ = try await scheduler.step() }
        return sessions.map { Array($0.generatedTokens) }
    }
}
