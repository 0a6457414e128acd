import ArgumentParser

/// `caravan`: run LLaMA-family models locally (and, later, through a Caravan cluster).
struct CaravanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caravan",
        abstract: "Run LLaMA-family GGUF models: generate, chat, tokenize, perplexity, bench.",
        subcommands: [GenerateCommand.self, ChatCommand.self, TokenizeCommand.self,
                      PerplexityCommand.self, BenchCommand.self]
    )
}
