import ArgumentParser
import Foundation
import Inference

/// `caravan perplexity`: perplexity of a text, computed as llama.cpp's perplexity tool does.
struct PerplexityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text file (chunks of --ctx tokens, second half of each scored, as llama.cpp).")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .shortAndLong, help: "Text file.")
    var file: String

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
        let text = String(decoding: data, as: UTF8.self)
        let (gguf, tokenizer) = try modelOptions.open()
        let context = modelOptions.context ?? 512
        var options = modelOptions
        options.context = context
        let stage = try options.stage(gguf)
        let addsBos = tokenizer.model.addBos
        let tokens = tokenizer.encode(text, addSpecial: addsBos, parseSpecial: false)
        Console.status("\(tokens.count) tokens, \(tokens.count / context) chunks of \(context)")
        let started = Date()
        let result = try Perplexity.compute(stage: stage, tokens: tokens, context: context,
                                            bos: addsBos ? tokenizer.bosToken : nil) { i, n, ppl in
            Console.status(String(format: "[%d/%d] %.4f", i + 1, n, ppl))
        }
        Console.status(String(format: "%.1f s", Date().timeIntervalSince(started)))
        Console.out(String(format: "PPL = %.4f +/- %.5f\n", result.perplexity, result.standardError))
    }
}
