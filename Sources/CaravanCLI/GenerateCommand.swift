import ArgumentParser
import CaravanCore
import Foundation
import Inference
import Llama
import Sampling
import Tokenizer

/// `caravan generate`: continue a raw prompt, streaming the text (locally, or through a coordinator).
struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Continue a prompt and stream the generated text.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var cluster: CoordinatorOptions

    @Option(name: .shortAndLong, help: "The prompt (special tokens such as <|im_start|> are parsed).")
    var prompt: String

    @Flag(name: .customLong("no-special"), help: "Do not parse special tokens written in the prompt.")
    var noSpecial = false

    @Flag(help: "Print one JSON object per token instead of plain text.")
    var json = false

    func run() async throws {
        if let client = try cluster.client() {
            try CoordinatorOptions.rejectLocalOnly(modelOptions)
            // The coordinator tokenizes the prompt itself (special tokens parsed).
            if noSpecial { throw ValidationError("--no-special is not supported with --coordinator (the job protocol does not carry it)") }
            _ = try await RemoteGeneration.run(client: client, input: .prompt(prompt), sampling: sampling.parameters, json: json)
            return
        }
        let (file, tokenizer) = try modelOptions.open()
        let stage = try modelOptions.stage(file)
        let ids = tokenizer.encode(prompt, addSpecial: true, parseSpecial: !noSpecial)
        let engine = LocalEngine(stage: stage)
        let result = try await LocalGeneration.run(engine: engine, tokenizer: tokenizer, prompt: ids,
                                                   parameters: sampling.parameters, json: json)
        Console.status(result.summary)
    }
}

/// A single local generation with timing.
enum LocalGeneration {
    struct Result {
        var text: String
        var promptTokens: Int
        var generated: [Int32]
        var reason: FinishReason
        var prefillSeconds: Double
        var decodeSeconds: Double

        var summary: String {
            let pp = prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0
            let tg = decodeSeconds > 0 && generated.count > 1 ? Double(generated.count - 1) / decodeSeconds : 0
            return String(format: "\n[%d prompt tokens at %.1f tok/s, %d generated at %.1f tok/s, finished: %@]",
                          promptTokens, pp, generated.count, tg, reason.rawValue)
        }
    }

    static func run(engine: any ForwardEngine, tokenizer: Tokenizer, prompt: [Int32],
                    parameters: SamplingParameters, json: Bool, echo: Bool = true) async throws -> Result {
        let session = try GenerationSession(sequence: SequenceID(1), prompt: prompt, parameters: parameters,
                                            tokenizer: tokenizer, contextLimit: engine.contextLimit)
        let scheduler = BatchScheduler(engine: engine)
        scheduler.add(session)
        var text = ""
        var reason = FinishReason.length
        let start = Date()
        var firstToken: Date?
        while scheduler.hasWork {
            for (_, event) in try await scheduler.step() {
                if firstToken == nil { firstToken = Date() }
                switch event {
                case let .token(id, piece):
                    text += piece
                    if echo {
                        if json {
                            Console.out(jsonLine(["token": .int(Int(id)), "text": .string(piece)]))
                        } else {
                            Console.out(piece)
                        }
                    }
                case let .finished(r, piece):
                    text += piece
                    reason = r
                    if echo {
                        if json {
                            Console.out(jsonLine(["finish_reason": .string(r.rawValue), "text": .string(piece)]))
                        } else {
                            Console.out(piece + "\n")
                        }
                    }
                }
            }
        }
        let end = Date()
        let first = firstToken ?? end
        return Result(text: text, promptTokens: prompt.count, generated: Array(session.generatedTokens), reason: reason,
                      prefillSeconds: first.timeIntervalSince(start), decodeSeconds: end.timeIntervalSince(first))
    }

    enum JSONScalar { case int(Int), string(String) }

    static func jsonLine(_ fields: [String: JSONScalar]) -> String {
        let body = fields.sorted { $0.key < $1.key }.map { key, value -> String in
            switch value {
            case let .int(i): return "\"\(key)\":\(i)"
            case let .string(s): return "\"\(key)\":\(jsonString(s))"
            }
        }
        return "{" + body.joined(separator: ",") + "}\n"
    }

    static func jsonString(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])) ?? Data("[\"\"]".utf8)
        let array = String(decoding: data, as: UTF8.self)
        return String(array.dropFirst().dropLast())
    }
}
