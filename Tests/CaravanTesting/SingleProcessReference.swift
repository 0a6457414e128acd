import CaravanCore
import CaravanWire
import Coordinator
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

    /// Generated token ids of each job (all run together in one batch, each with its own prompt
    /// tokens and sampling parameters as the coordinator reads them), by client request id.
    public static func generate(modelPath: String, jobs: [Caravan_V1_JobSubmit],
                                contextLimit: Int = 256) async throws -> [String: [Int32]] {
        let file = try GGUFFile(path: modelPath)
        let tokenizer = try Tokenizer(gguf: file)
        let stage = try LlamaStage(file: file, contextLimit: contextLimit, runner: ComputeThreadPool(threads: 1))
        let scheduler = BatchScheduler(engine: LocalEngine(stage: stage))
        var sessions: [(String, GenerationSession)] = []
        for (i, job) in jobs.enumerated() {
            guard case .promptTokens(let ids)? = job.input else { throw ReferenceError(description: "\(job.clientRequestID) has no prompt tokens") }
            let session = try GenerationSession(
                sequence: SequenceID(UInt64(i + 1)), prompt: ids.ids.map { Int32($0) },
                parameters: try JobRequest(wire: job).parameters(contextLimit: contextLimit, drawnSeed: .random(in: 0 ... .max)),
                tokenizer: tokenizer,
                contextLimit: contextLimit)
            sessions.append((job.clientRequestID, session))
            scheduler.add(session)
        }
        while scheduler.hasWork { _ = try await scheduler.step() }
        return Dictionary(uniqueKeysWithValues: sessions.map { ($0.0, Array($0.1.generatedTokens)) })
    }

    /// A job the reference cannot run.
    public struct ReferenceError: Error, CustomStringConvertible {
        /// Why.
        public let description: String
    }
}
