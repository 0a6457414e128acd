import XCTest
@testable import ChatTemplate

final class RenderTests: XCTestCase {
    private func render(_ source: String, _ messages: [ChatMessage] = [], agp: Bool = false,
                        variables: [String: TemplateValue] = [:]) throws -> String {
        try ChatTemplate(source).render(messages: messages, addGenerationPrompt: agp, bosToken: "<s>", eosToken: "</s>",
                                        variables: variables)
    }

    func testStandardVariables() throws {
        let msgs = [ChatMessage(role: "system", content: "S"), ChatMessage(role: "user", content: "U")]
        XCTAssertEqual(try render("{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m['content'] }};{% endfor %}{{ eos_token }}{{ add_generation_prompt }}", msgs, agp: true),
                       "<s>system:S;user:U;</s>True")
        XCTAssertEqual(try render("{{ tools is none }}{{ documents is defined }}{{ other is defined }}"), "TrueTrueFalse")
    }

    func testVariablesOverrideAndKeepOrder() throws {
        let tool: TemplateValue = ["name": "f", "args": ["b": 1, "a": [true, nil, 2.5]]]
        XCTAssertEqual(try render("{{ tools | tojson }}", variables: ["tools": [tool]]),
                       #"[{"name": "f", "args": {"b": 1, "a": [true, null, 2.5]}}]"#)
        XCTAssertEqual(try render("{{ bos_token }}", variables: ["bos_token": "X"]), "X")
        XCTAssertEqual(try render("{% for k, v in cfg.items() %}{{ k }}{{ v }}{% endfor %}",
                                  variables: ["cfg": .dictionary(TemplateDictionary(["z": 1, "a": 2]))]), "a2z1")
    }

    func testWhitespaceControlLikeTransformers() throws {
        // trim_blocks removes the newline after a block tag; lstrip_blocks the indentation before it.
        XCTAssertEqual(try render("a\n  {% if true %}\n  x\n  {% endif %}\nb"), "a\n  x\nb")
        XCTAssertEqual(try render("a\n  {# c #}\nb"), "a\nb")
        XCTAssertEqual(try render("  {{ 'v' }}\nz"), "  v\nz")  // no lstrip/trim around {{ }}
        XCTAssertEqual(try render("x  {%- if true -%}  \n y {%- endif %}  z\n"), "xy  z")
        XCTAssertEqual(try render("a\n {%+ if true %}x{% endif +%}\ny"), "a\n x\ny")
        XCTAssertEqual(try render("{% if true %}\r\nq\r\nz{% endif %}"), "q\nz")
        XCTAssertEqual(try render("t\n\n"), "t\n")
    }

    func testGenerationBlockAndMacros() throws {
        XCTAssertEqual(try render("{% generation %}a{{ 1 }}{% endgeneration %}b"), "a1b")
        XCTAssertEqual(try render("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(1) }}{{ m('y') | upper }}"), "<1><Y>")
    }

    func testNamespaceIsSharedAcrossLoopScopes() throws {
        let src = "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}"
        XCTAssertEqual(try render(src, [ChatMessage(role: "user", content: "")]), "False")
        XCTAssertEqual(try render(src, [ChatMessage(role: "user", content: ""), ChatMessage(role: "system", content: "")]), "True")
    }

    func testStrftimeNowProducesText() throws {
        let year = try render("{{ strftime_now('%Y') }}")
        XCTAssertEqual(year.count, 4)
        XCTAssertNotNil(Int(year))
    }

    func testTemplateIsReusableAndSendable() async throws {
        let t = try ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}")
        let out = await Task.detached { try? t.render(messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: false) }.value
        XCTAssertEqual(out, "hi")
        XCTAssertEqual(try t.render(messages: [], addGenerationPrompt: true), "")
    }

    func testChatMessageCodable() throws {
        let m = ChatMessage(role: "user", content: "x\"y")
        let data = try JSONEncoder().encode(m)
        XCTAssertEqual(try JSONDecoder().decode(ChatMessage.self, from: data), m)
    }
}
