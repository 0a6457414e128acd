import Foundation
import GGUF

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

    /// Bytes of F16 keys and values that every layer of the model at `path` holds for
    /// `positions` positions (what a plan sizes as context x sequences).
    public static func kvBytes(path: String, positions: Int) throws -> Int {
        let file = try GGUFFile(path: path)
        func field(_ key: String) throws -> Int {
            guard let arch = file.architecture, let value = file.int("\(arch).\(key)") else { throw MissingModelField(key: key) }
            return value
        }
        let heads = try field("attention.head_count")
        let kvHeads = (try? field("attention.head_count_kv")) ?? heads
        return try field("block_count") * 2 * kvHeads * (try field("embedding_length") / heads) * 2 * positions
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

/// Thrown when a model file lacks a field a test reads.
public struct MissingModelField: Error, CustomStringConvertible {
    /// The key, without the architecture prefix.
    public let key: String
    public var description: String { "the model has no \(key)" }
}
