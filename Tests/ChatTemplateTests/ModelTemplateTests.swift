import GGUF
import TestSupport
import XCTest
@testable import ChatTemplate

/// The default model's own `tokenizer.chat_template`, read from its GGUF metadata.
final class ModelTemplateTests: XCTestCase {
    func testSmolLM2TemplateFromModelMatchesFixtureAndRenders() throws {
        let file = try GGUFFile(path: try TestModel.requirePath())
        let source = try XCTUnwrap(file.string("tokenizer.chat_template"))
        let fixture = try Fixtures.load("smollm2.json")
        XCTAssertEqual(source, fixture["template"]?.string, "fixture is stale: rerun Scripts/fixtures/make_chat_fixtures.py")
        let template = try ChatTemplate(source)
        let out = try template.render(messages: [ChatMessage(role: "user", content: "What is 2+2?")], addGenerationPrompt: true)
        XCTAssertEqual(out, """
            <|im_start|>system
            You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
            <|im_start|>user
            What is 2+2?<|im_end|>
            <|im_start|>assistant

            """)
    }
}
