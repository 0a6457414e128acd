import CaravanCore
import ChatTemplate
import Coordinator
import Foundation
import GGUF
import Llama
import Planning
import TestSupport
import Tokenizer
import XCTest

/// Mutated model files through every path that reads one: the worker's (`GGUFFile`, then
/// `LlamaStage` for a layer range with the assignment's context, then a forward step), the
/// coordinator's (`ModelFacts`, the tokenizer, the chat template from the file). Header fields
/// get hostile values (counts, lengths, types, dimensions, offsets; ``GGUFFuzz``), files are
/// truncated and bytes flipped. Each file loads, or fails with a typed error; nothing traps.
final class ModelFileFuzzTests: XCTestCase {
    private enum Outcome: Hashable { case loaded, refused(String) }

    /// The slowest phase of the last ``load(_:)`` (for a failure message).
    private var slowest: (phase: String, time: Duration) = ("", .zero)

    /// Reads `path` as a worker and a coordinator would; the first typed error ends it.
    private func load(_ path: String) -> Outcome {
        slowest = ("", .zero)
        var mark = ContinuousClock.now
        func lap(_ phase: String) {
            let now = ContinuousClock.now
            if now - mark > slowest.time { slowest = (phase, now - mark) }
            mark = now
        }
        do throws(any Error) {
            let file = try GGUFFile(path: path)
            lap("GGUFFile")
            _ = try ModelFacts(file: file)
            let config = try LlamaConfiguration(file: file)
            lap("ModelFacts")
            let stage = try LlamaStage(file: file, layers: LayerRange(0, config.layerCount), contextLimit: 64)
            lap("LlamaStage")
            let token = Int32(min(3, config.vocabularySize - 1))
            _ = try stage.forward(StageBatch(entries: [StageEntry(sequence: SequenceID(1), position: 0, token: token, wantsLogits: true)]))
            lap("forward")
            let tokenizer = try Tokenizer(gguf: file)
            lap("Tokenizer")
            let ids = tokenizer.encode("abc d <|im_start|>1 2", addSpecial: true)
            _ = tokenizer.decode(ids + [0, Int32(tokenizer.vocabularySize - 1)])
            lap("encode")
            if let source = tokenizer.chatTemplate {
                _ = try ChatTemplate(source).render(messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true)
            }
            lap("template")
            return .loaded
        } catch let e as GGUFError {
            // The reason without the file's path, cut before its numbers.
            let reason = e.description.replacingOccurrences(of: path, with: "").prefix { !$0.isNumber && $0 != "'" }
            return .refused("gguf: \(reason.prefix(60))")
        } catch let e as StageError {
            return .refused("stage: \(e)".components(separatedBy: " ").prefix(3).joined(separator: " "))
        } catch let e as TokenizerError {
            return .refused("tokenizer: \(e)".components(separatedBy: " ").prefix(3).joined(separator: " "))
        } catch let e as ChatTemplateError {
            return .refused("template: \(e.message.prefix(30))")
        } catch {
            XCTFail("untyped error \(type(of: error)): \(error)")
            return .refused("untyped")
        }
    }

    func testMutatedModelFilesLoadOrFailWithTypedErrors() throws {
        let run = FuzzRun(short: 1500, salt: 4)
        let seed = GGUFFuzz.tinyModel(seed: 11)
        XCTAssertEqual(load(try TempFiles.write(seed, name: "seed.gguf")), .loaded, "the seed loads")
        XCTAssertGreaterThan(GGUFFuzz.fields(seed).count, 100, "the seed's header is walked")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-gguf-fuzz-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("case.gguf").path
        var outcomes: [Outcome: Int] = [:]
        let started = ContinuousClock.now
        for i in run.cases {
            var rng = SplitMix(seed: run.seed(ofCase: i))
            let bytes = GGUFFuzz.mutate(seed, &rng)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let caseStart = ContinuousClock.now
            outcomes[load(path), default: 0] += 1
            XCTAssertLessThan(ContinuousClock.now - caseStart, .seconds(5),
                              "case \(i): \(slowest.phase) took \(slowest.time) (CARAVAN_FUZZ_CASE=\(i) replays it)")
        }
        let loaded = outcomes[.loaded] ?? 0
        print("model-file fuzz: \(run.iterations) files, \(loaded) loaded, \(run.iterations - loaded) refused "
              + "(\(outcomes.count - (loaded > 0 ? 1 : 0)) distinct reasons), \(ContinuousClock.now - started), seed \(run.seed)")
        if run.cases.count > 100 { XCTAssertGreaterThan(outcomes.count, 5, "the mutations reach many different checks") }
    }
}
