import CaravanCore
import GGUF
import Inference
import Llama
import Sampling
import TestSupport
import Tokenizer
import XCTest

/// The real default model, loaded once for every test of the target.
enum RealModel {
    static let loaded: (GGUFFile, Tokenizer)? = {
        guard let file = try? GGUFFile(path: TestModel.path), let tok = try? Tokenizer(gguf: file) else { return nil }
        return (file, tok)
    }()
}

extension XCTestCase {
    func load() throws -> (GGUFFile, Tokenizer) {
        _ = try TestModel.requirePath()
        return try XCTUnwrap(RealModel.loaded)
    }

    func engine(_ file: GGUFFile, context: Int = 256) throws -> LocalEngine {
        LocalEngine(stage: try LlamaStage(file: file, contextLimit: context, runner: ComputeThreadPool(threads: 2)))
    }

    /// Runs sessions to completion; returns each sequence's generated ids and text.
    func runAll(_ scheduler: BatchScheduler) async throws -> [SequenceID: (ids: [Int32], text: String, reason: FinishReason)] {
        var out: [SequenceID: (ids: [Int32], text: String, reason: FinishReason)] = [:]
        var steps = 0
        while scheduler.hasWork {
            steps += 1
            XCTAssertLessThan(steps, 2000)
            for (seq, event) in try await scheduler.step() {
                var r = out[seq] ?? ([], "", .length)
                switch event {
                case let .token(id, text): r.ids.append(id); r.text += text
                case let .finished(reason, text): r.text += text; r.reason = reason
                }
                out[seq] = r
            }
        }
        return out
    }

}
