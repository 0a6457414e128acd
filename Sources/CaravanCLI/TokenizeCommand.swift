import ArgumentParser
import Foundation
import Tokenizer

/// `caravan tokenize`: show how a text is split into tokens.
struct TokenizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tokenize", abstract: "Tokenize a text file or string.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .shortAndLong, help: "File whose text is tokenized.")
    var file: String?

    @Option(name: .shortAndLong, help: "Text to tokenize (instead of --file).")
    var prompt: String?

    @Flag(help: "Print one JSON array of ids.")
    var ids = false

    @Flag(name: .customLong("no-bos"), help: "Do not add BOS/EOS even when the model asks for them.")
    var noBos = false

    @Flag(name: .customLong("no-special"), help: "Do not parse special tokens written in the text.")
    var noSpecial = false

    func validate() throws {
        if (file == nil) == (prompt == nil) { throw ValidationError("give exactly one of --file or --prompt") }
    }

    func run() async throws {
        let text: String
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = prompt ?? ""
        }
        let (_, tokenizer) = try modelOptions.open()
        let tokens = tokenizer.encode(text, addSpecial: !noBos, parseSpecial: !noSpecial)
        if ids {
            Console.out("[" + tokens.map(String.init).joined(separator: ", ") + "]\n")
        } else {
            for t in tokens {
                let piece = String(decoding: tokenizer.piece(t), as: UTF8.self)
                Console.out("\(t) -> \(piece.debugDescription)\n")
            }
            Console.status("\(tokens.count) tokens")
        }
    }
}
