import ArgumentParser
import CaravanClient
import CaravanCore
import ChatTemplate
import Foundation
import Inference
import Tokenizer

/// `caravan chat`: an interactive conversation using the model's own chat template.
struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat", abstract: "Chat interactively (reads lines from standard input; an empty line or EOF ends).")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var cluster: CoordinatorOptions

    @Option(name: .customLong("system"), help: "System message.")
    var system: String?

    func run() async throws {
        if let client = try cluster.client() {
            try CoordinatorOptions.rejectLocalOnly(modelOptions)
            try await remote(client)
            return
        }
        let (file, tokenizer) = try modelOptions.open()
        let stage = try modelOptions.stage(file)
        guard let source = tokenizer.chatTemplate else {
            throw ValidationError("the model has no chat template (tokenizer.chat_template); use `caravan generate`")
        }
        let template = try ChatTemplate(source)
        let engine = LocalEngine(stage: stage)
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        let bos = tokenizer.bosToken.map { String(decoding: tokenizer.piece($0), as: UTF8.self) } ?? ""
        let eos = tokenizer.eosToken.map { String(decoding: tokenizer.piece($0), as: UTF8.self) } ?? ""
        while true {
            Console.status("> ")
            guard let line = readLine(), !line.isEmpty else { break }
            messages.append(ChatMessage(role: "user", content: line))
            let rendered = try template.render(messages: messages, addGenerationPrompt: true, bosToken: bos, eosToken: eos)
            // The template writes BOS itself when the model wants one.
            let ids = tokenizer.encode(rendered, addSpecial: !(bos.isEmpty == false && rendered.hasPrefix(bos)), parseSpecial: true)
            let result = try await LocalGeneration.run(engine: engine, tokenizer: tokenizer, prompt: ids,
                                                       parameters: sampling.parameters, json: false)
            messages.append(ChatMessage(role: "assistant", content: result.text))
        }
    }

    /// The conversation through a coordinator, which renders it with the model's template.
    private func remote(_ client: CaravanClient) async throws {
        var conversation: [ChatTurn] = []
        if let system { conversation.append(ChatTurn(role: "system", content: system)) }
        while true {
            Console.status("> ")
            guard let line = readLine(), !line.isEmpty else { break }
            conversation.append(ChatTurn(role: "user", content: line))
            let reply = try await RemoteGeneration.run(client: client, input: .chat(conversation), sampling: sampling.parameters, json: false)
            conversation.append(ChatTurn(role: "assistant", content: reply))
        }
    }
}
