import Foundation
import GGUF
import TestSupport
import Tokenizer
import XCTest

/// A committed fixture: llama.cpp's ids for texts, made by Scripts/fixtures/make_tokenizer_fixtures.py.
struct TokenizerFixture: Decodable {
    struct Case: Decodable {
        let text: String
        let addSpecial: Bool
        let parseSpecial: Bool
        let ids: [Int32]
    }
    let vocab: String
    let vocabularySize: Int
    let bos: Int32?
    let eos: Int32?
    let addBos: Bool
    let addEos: Bool
    let eog: [Int32]
    let control: [Int32]
    let cases: [Case]
    /// id -> hex of the bytes llama.cpp prints for it.
    let pieces: [String: String]

    static func load(_ name: String) throws -> TokenizerFixture {
        let path = TestModel.fixturesDirectory + "/tokenizer/\(name).json"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode(TokenizerFixture.self, from: data)
    }
}

/// Vocab-only GGUF files that Scripts/setup extracts into ~/.cache/caravan/vocab.
enum VocabFiles {
    static var directory: String {
        if let dir = ProcessInfo.processInfo.environment["CARAVAN_VOCAB_DIR"], !dir.isEmpty { return dir }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        return home + "/.cache/caravan/vocab"
    }

    /// Path of `ggml-vocab-<name>.gguf`; throws (the test fails) when it is missing.
    static func requirePath(_ name: String) throws -> String {
        let path = directory + "/ggml-vocab-\(name).gguf"
        guard FileManager.default.fileExists(atPath: path) else {
            throw MissingVocab(path: path)
        }
        return path
    }

    struct MissingVocab: Error, CustomStringConvertible {
        let path: String
        var description: String { "vocab file not found at \(path); run Scripts/setup (or Scripts/setup --vocab)" }
    }
}

/// Tokenizers loaded once per test process.
enum SharedTokenizers {
    static let smollm2: Result<Tokenizer, any Error> = Result {
        try Tokenizer(gguf: GGUFFile(path: TestModel.requirePath()))
    }
    static let llamaSPM: Result<Tokenizer, any Error> = Result {
        try Tokenizer(gguf: GGUFFile(path: VocabFiles.requirePath("llama-spm")))
    }
    static let llamaBPE: Result<Tokenizer, any Error> = Result {
        try Tokenizer(gguf: GGUFFile(path: VocabFiles.requirePath("llama-bpe")))
    }
    static let qwen2: Result<Tokenizer, any Error> = Result {
        try Tokenizer(gguf: GGUFFile(path: VocabFiles.requirePath("qwen2")))
    }
    static let gpt2Model: Result<TokenizerModel, any Error> = Result {
        try TokenizerModel(gguf: GGUFFile(path: VocabFiles.requirePath("gpt-2")))
    }
    static let gpt2: Result<Tokenizer, any Error> = Result { try Tokenizer(model: gpt2Model.get()) }

    /// The GPT-2 vocabulary with another pre-tokenizer, as the fixture script patches it
    /// (defaults such as add_bos follow the new name, since the file does not set them).
    static func gpt2(pre: String) throws -> Tokenizer {
        let m = try gpt2Model.get()
        return try Tokenizer(model: TokenizerModel(
            kind: m.kind, preTokenizer: pre, tokens: m.tokens, tokenTypes: m.tokenTypes, scores: m.scores,
            merges: m.merges, bosId: m.bosId, eosId: m.eosId, unkId: m.unkId, padId: m.padId,
            eotId: m.eotId, eomId: m.eomId, chatTemplate: m.chatTemplate))
    }
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

/// Compares every fixture case, every recorded piece, EOG and control sets; reports each mismatch.
func checkFixture(_ tokenizer: Tokenizer, _ fixture: TokenizerFixture,
                  file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(tokenizer.vocabularySize, fixture.vocabularySize, file: file, line: line)
    XCTAssertEqual(tokenizer.bosToken, fixture.bos, file: file, line: line)
    XCTAssertEqual(tokenizer.eosToken, fixture.eos, file: file, line: line)
    XCTAssertEqual(tokenizer.model.addBos, fixture.addBos, file: file, line: line)
    XCTAssertEqual(tokenizer.model.addEos, fixture.addEos, file: file, line: line)
    var failures = 0
    for c in fixture.cases {
        let got = tokenizer.encode(c.text, addSpecial: c.addSpecial, parseSpecial: c.parseSpecial)
        if got != c.ids {
            failures += 1
            XCTFail("\(fixture.vocab): \(c.text.debugDescription) addSpecial=\(c.addSpecial) "
                    + "parseSpecial=\(c.parseSpecial)\n  expected \(c.ids)\n  got      \(got)", file: file, line: line)
        }
    }
    XCTAssertGreaterThan(fixture.cases.count, 100, file: file, line: line)
    XCTAssertEqual(failures, 0, "\(failures) of \(fixture.cases.count) cases differ", file: file, line: line)
    if ["smollm2", "llama-spm", "llama-bpe"].contains(fixture.vocab) {
        XCTAssertGreaterThan(fixture.pieces.count, 500, file: file, line: line)
    }
    for (key, expected) in fixture.pieces {
        guard let id = Int32(key) else { XCTFail("bad piece key \(key)"); continue }
        let got = hex(tokenizer.piece(id))
        if got != expected {
            XCTFail("\(fixture.vocab): piece(\(id)) expected \(expected) got \(got)", file: file, line: line)
        }
    }
    XCTAssertEqual(tokenizer.endOfGenerationTokens, fixture.eog, "EOG set", file: file, line: line)
    let control = (0..<Int32(tokenizer.vocabularySize)).filter { tokenizer.isControl($0) }
    XCTAssertEqual(control, fixture.control, "control tokens", file: file, line: line)
}
