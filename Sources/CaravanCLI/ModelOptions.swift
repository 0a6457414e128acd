import ArgumentParser
import Foundation
import GGUF
import Llama
import Tokenizer

/// Options shared by every command that loads a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "GGUF model file (default: SmolLM2-135M-Instruct Q4_1, downloaded into the cache when missing).")
    var model: String?

    @Option(name: .shortAndLong, help: "Compute threads (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("ctx"), help: "Context length per sequence (default: the model's, at most 4096).")
    var context: Int?

    var threadCount: Int { max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount) }

    func validate() throws {
        if let t = threads, t < 1 || t > 512 { throw ValidationError("--threads must be between 1 and 512") }
        if let c = context, c < 8 { throw ValidationError("--ctx must be at least 8") }
    }

    /// Opens the model file (downloading the default one if needed) and builds the tokenizer.
    func open() throws -> (GGUFFile, Tokenizer) {
        let started = Date()
        let file = try openFile()
        let tokenizer = try Tokenizer(gguf: file)
        Console.status(String(format: "Loaded %@ (%.0f MB, %@) in %.0f ms", (file.path as NSString).lastPathComponent,
                              Double(file.fileSize) / 1e6, file.architecture ?? "?", Date().timeIntervalSince(started) * 1000))
        return (file, tokenizer)
    }

    /// Opens (maps) the model file only, downloading the default one if needed.
    func openFile() throws -> GGUFFile {
        let path = try model ?? ModelStore.defaultModelPath(download: true)
        Console.status("Loading \(path)...")
        return try GGUFFile(path: path)
    }

    /// A stage holding every layer.
    func stage(_ file: GGUFFile) throws -> LlamaStage {
        let config = try LlamaConfiguration(file: file)
        let ctx = min(context ?? min(config.contextLength, 4096), config.contextLength)
        return try LlamaStage(file: file, contextLimit: ctx, runner: ComputeThreadPool(threads: threadCount))
    }
}

/// Progress and status lines go to standard error, so standard output carries only results.
enum Console {
    static func status(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    static func out(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }
}
