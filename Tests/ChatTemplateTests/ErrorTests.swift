import XCTest
@testable import ChatTemplate

final class ErrorTests: XCTestCase {
    private func syntaxError(_ source: String, file: StaticString = #filePath, line: UInt = #line) -> (String, SourcePosition)? {
        do {
            _ = try ChatTemplate(source)
            XCTFail("expected a syntax error for \(source.debugDescription)", file: file, line: line)
        } catch {
            if case .syntax(let message, let position) = error { return (message, position) }
            XCTFail("expected .syntax, got \(error)", file: file, line: line)
        }
        return nil
    }

    func testUnknownFilterIsSyntaxErrorWithPosition() throws {
        let (message, position) = try XCTUnwrap(syntaxError("line one\n  {{ name | shout }}"))
        XCTAssertEqual(message, "unknown filter 'shout'")
        XCTAssertEqual(position, SourcePosition(line: 2, column: 13))
        XCTAssertEqual(try XCTUnwrap(syntaxError("{{ x is frobbed }}")).0, "unknown test 'frobbed'")
    }

    func testUnclosedTags() throws {
        XCTAssertEqual(try XCTUnwrap(syntaxError("abc {{ name ")).0, "unclosed tag '{{' (missing '}}')")
        let (m, p) = try XCTUnwrap(syntaxError("x\n{% if true "))
        XCTAssertEqual(m, "unclosed tag '{%' (missing '%}')")
        XCTAssertEqual(p, SourcePosition(line: 2, column: 1))
        XCTAssertEqual(try XCTUnwrap(syntaxError("{# no end")).0, "unclosed comment (missing '#}')")
        XCTAssertEqual(try XCTUnwrap(syntaxError("{{ 'open }}")).0, "unterminated string literal")
    }

    func testUnclosedAndUnbalancedBlocks() throws {
        let (m, _) = try XCTUnwrap(syntaxError("{% for x in xs %}{{ x }}"))
        XCTAssertTrue(m.contains("unclosed 'for' block opened at line 1, column 4"), m)
        XCTAssertTrue(m.contains("'endfor'"), m)
        XCTAssertEqual(try XCTUnwrap(syntaxError("{% if a %}x{% endfor %}")).0,
                       "unexpected 'endfor' inside the 'if' block opened at line 1, column 4 (expected 'elif' or 'else' or 'endif')")
        XCTAssertEqual(try XCTUnwrap(syntaxError("x{% endif %}")).0, "unexpected 'endif' tag with no open block to close")
        XCTAssertEqual(try XCTUnwrap(syntaxError("{% include 'x' %}")).0, "unknown or unsupported tag 'include'")
        XCTAssertEqual(try XCTUnwrap(syntaxError("{{ (1 + 2 }}")).0, "unexpected '}': '(' is not closed")
        XCTAssertEqual(try XCTUnwrap(syntaxError("{{ 1 + }}")).0, "unexpected '}}' in expression")
    }

    func testRaiseException() {
        let t = try? ChatTemplate("{% if messages | length == 0 %}{{ raise_exception('need at least one message') }}{% endif %}ok")
        XCTAssertThrowsError(try t?.render(messages: [], addGenerationPrompt: false)) { error in
            XCTAssertEqual(error as? ChatTemplateError, .raised(message: "need at least one message"))
            XCTAssertEqual("\(error)", "chat template raised an exception: need at least one message")
        }
        XCTAssertEqual(try t?.render(messages: [ChatMessage(role: "user", content: "x")], addGenerationPrompt: false), "ok")
    }

    func testRenderErrorsCarryPositionAndMessage() throws {
        let t = try ChatTemplate("ok\n{{ messages[0].content.missing.deeper }}")
        XCTAssertThrowsError(try t.render(messages: [ChatMessage(role: "user", content: "c")], addGenerationPrompt: false)) { error in
            guard case .render(let message, let position)? = error as? ChatTemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(message, "'str object' has no attribute 'missing'")
            XCTAssertEqual(position?.line, 2)
        }
        XCTAssertThrowsError(try ChatTemplate("{{ 'a' < 1 }}").render(messages: [], addGenerationPrompt: false)) { error in
            XCTAssertEqual((error as? ChatTemplateError)?.message, "unsupported operand type(s) for <: 'str' and 'int'")
        }
        XCTAssertThrowsError(try ChatTemplate("{% set x = 1 %}{% set x.y = 2 %}").render(messages: [], addGenerationPrompt: false)) { error in
            XCTAssertTrue((error as? ChatTemplateError)?.message.contains("not a namespace") ?? false)
        }
    }
}
