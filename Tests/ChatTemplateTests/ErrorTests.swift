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

final class HostileInputTests: XCTestCase {
    func testDeepNestingIsRejectedNotCrashing() {
        let deepParens = "{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}"
        XCTAssertThrowsError(try ChatTemplate(deepParens)) { error in
            XCTAssertTrue("\(error)".contains("nests too deeply"), "\(error)")
        }
        let deepNot = "{{ " + String(repeating: "not ", count: 5000) + "1 }}"
        XCTAssertThrowsError(try ChatTemplate(deepNot))
        let deepIf = String(repeating: "{% if true %}", count: 1000) + String(repeating: "{% endif %}", count: 1000)
        XCTAssertThrowsError(try ChatTemplate(deepIf))
        let fine = String(repeating: "{% if true %}", count: 50) + "x" + String(repeating: "{% endif %}", count: 50)
        XCTAssertEqual(try ChatTemplate(fine).render(messages: [], addGenerationPrompt: false), "x")
    }

    func testRecursiveMacroIsBounded() throws {
        let t = try ChatTemplate("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
        XCTAssertThrowsError(try t.render(messages: [], addGenerationPrompt: false)) { error in
            XCTAssertEqual((error as? ChatTemplateError)?.message, "macro recursion too deep")
        }
    }
}

final class LongChainTests: XCTestCase {
    func testLongOperatorChainsAreBounded() {
        let longSum = "{{ 1" + String(repeating: " + 1", count: 20_000) + " }}"
        XCTAssertThrowsError(try ChatTemplate(longSum))
        let longFilters = "{{ 'a'" + String(repeating: " | trim", count: 20_000) + " }}"
        XCTAssertThrowsError(try ChatTemplate(longFilters))
        XCTAssertEqual(try ChatTemplate("{{ 1" + String(repeating: " + 1", count: 50) + " }}")
            .render(messages: [], addGenerationPrompt: false), "51")
    }
}

final class DeepButValidTests: XCTestCase {
    /// The deepest accepted templates still render on a secondary thread's smaller stack.
    func testDeepestAcceptedTemplatesRenderInTask() async throws {
        var n = 10
        var deepest = ""
        while true {
            let candidate = "{{ " + String(repeating: "(", count: n) + "1" + String(repeating: ")", count: n) + " }}"
            guard (try? ChatTemplate(candidate)) != nil else { break }
            deepest = candidate
            n += 5
        }
        XCTAssertGreaterThan(n, 20)
        var chain = 10
        var longest = ""
        while true {
            let candidate = "{{ 1" + String(repeating: " + 1", count: chain) + " }}"
            guard (try? ChatTemplate(candidate)) != nil else { break }
            longest = candidate
            chain += 10
        }
        XCTAssertGreaterThan(chain, 100)
        let sources = [deepest, longest]
        let outputs = await Task.detached {
            sources.map { try? ChatTemplate($0).render(messages: [], addGenerationPrompt: false) }
        }.value
        XCTAssertEqual(outputs[0], "1")
        XCTAssertEqual(outputs[1], String(chain - 9))
    }
}
