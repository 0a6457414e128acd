import Foundation

/// llama.cpp's outputs on the default model (Tests/Fixtures/engine/reference.json, made by
/// Scripts/fixtures/make_engine_fixtures.py).
public struct EngineReference: Decodable, Sendable {
    public struct Greedy: Decodable, Sendable {
        public let prompt: String
        public let prompt_ids: [Int32]
        public let greedy_ids: [Int32]
        /// Per generated step: the five best (token, logit) pairs.
        public let top5: [[[Double]]]
    }
    public struct Perplexity: Decodable, Sendable {
        public let n_ctx: Int
        public let chunks: Int
        public let tokens: Int
        public let ppl: Double
    }
    public let greedy: [Greedy]
    public let perplexity: [Perplexity]

    /// Loads the committed reference.
    public static func load() throws -> EngineReference {
        let url = URL(fileURLWithPath: TestModel.fixturesDirectory + "/engine/reference.json")
        return try JSONDecoder().decode(EngineReference.self, from: Data(contentsOf: url))
    }

    /// The perplexity test text.
    public static func perplexityText() throws -> String {
        try String(contentsOfFile: TestModel.fixturesDirectory + "/engine/perplexity.txt", encoding: .utf8)
    }
}
