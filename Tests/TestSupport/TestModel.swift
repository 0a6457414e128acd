import Foundation

/// Locates the real test model (SmolLM2-135M-Instruct Q4_1) that `Scripts/setup` puts in the cache.
///
/// Tests that need it fail (they do not skip) when it is missing: run `Scripts/test`, which installs it.
public enum TestModel {
    /// The model file name inside the cache directory.
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// Directory holding cached models: `$CARAVAN_MODEL_DIR` or `~/.cache/caravan/models`.
    public static var cacheDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["CARAVAN_MODEL_DIR"], !dir.isEmpty { return dir }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        return home + "/.cache/caravan/models"
    }

    /// Path of the default model; `$CARAVAN_TEST_MODEL` overrides it.
    public static var path: String {
        if let p = ProcessInfo.processInfo.environment["CARAVAN_TEST_MODEL"], !p.isEmpty { return p }
        return cacheDirectory + "/" + fileName
    }

    /// The path, or an error telling how to get the model.
    public static func requirePath() throws -> String {
        let p = path
        guard FileManager.default.fileExists(atPath: p) else {
            throw MissingTestModel(path: p)
        }
        return p
    }

    /// Directory of committed fixtures (`Tests/Fixtures`), found relative to this source file.
    public static var fixturesDirectory: String {
        let here = URL(fileURLWithPath: #filePath)
        return here.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures").path
    }
}

/// Thrown when the test model is not in the cache.
public struct MissingTestModel: Error, CustomStringConvertible {
    public let path: String
    public var description: String {
        "test model not found at \(path); run Scripts/setup (or Scripts/test) to download it"
    }
}
