import Foundation
import Synchronization
import TestSupport
import XCTest
@testable import ChatTemplate

/// Hostile chat templates (a model file's `tokenizer.chat_template` is input like any other):
/// every one parses and renders to a result or a ``ChatTemplateError``, in bounded time and with
/// bounded output, never a trap.
final class TemplateFuzzTests: XCTestCase {
    private static let messages = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi there"),
                            ChatMessage(role: "assistant", content: "Hello!"), ChatMessage(role: "user", content: "Why?")]

    /// Parses and renders `source`; returns the output, or nil when it was refused with a typed error.
    @discardableResult
    private static func render(_ source: String) -> String? {
        do {
            return try ChatTemplate(source).render(messages: messages, addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        } catch {
            return nil  // typed: `ChatTemplate` throws only ChatTemplateError
        }
    }

    /// Templates that each made the renderer trap, hang or allocate without bound before it had
    /// a budget: repetition and ranges sized by a number, nested loops, doubling strings, integer
    /// division of the smallest integer by -1, negative and huge indents.
    func testHostileTemplatesFailCleanly() {
        let hostile = [
            "{{ 'ab' * 4000000000000 }}",
            "{{ [1, 2] * 1000000000000 }}",
            "{{ range(0, 9223372036854775807) | length }}",
            "{{ range(9223372036854775807) | length }}",
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
            "{% set ns = namespace(s='ab') %}{% for i in range(80) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
            "{% set ns = namespace(s=[1]) %}{% for i in range(80) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
            "{{ -9223372036854775807 - 1 // -1 }}",
            "{{ (-9223372036854775807 - 1) // -1 }}",
            "{{ (-9223372036854775807 - 1) % -1 }}",
            "{{ 'a\nb' | indent(-5) }}",
            "{{ 'a\nb' | indent(9223372036854775807) }}",
            "{{ messages | tojson(indent=-3) }}",
            "{{ messages | tojson(indent=9223372036854775807) }}",
            "{{ '%999999999999d' % 1 }}",
            "{{ '%.999999999999f' % 1.5 }}",
            "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
            "{% for m in messages %}{% for m2 in messages %}{% for i in range(100000) %}{{ i }}{% endfor %}{% endfor %}{% endfor %}",
            "{{ 1 ** 9223372036854775807 }}",
            "{{ '%99999999999999999999999d' % 1 }}",
            "{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}{{ ns | tojson }}",
            "{% set ns = namespace(a=[]) %}{% for i in range(1000000) %}{% set ns.a = [ns.a] %}{% endfor %}{{ ns.a }}",
            "{% set ns = namespace(a=[]) %}{% for i in range(1000000) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}",
            "{% set big = 'x' * 8000000 %}{{ [big] * 1000000 | join }}{{ ([big] * 1000000) | join('') }}{{ big | replace('x', 'yyyy') }}",
            "{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}",
        ]
        // Rendered two at a time (the renders share nothing); each is timed by itself.
        let outcomes = Mutex([(elapsed: Duration, bytes: Int)?](repeating: nil, count: hostile.count))
        DispatchQueue.concurrentPerform(iterations: hostile.count) { i in
            let started = ContinuousClock.now
            let bytes = Self.render(hostile[i])?.utf8.count ?? 0
            let elapsed = ContinuousClock.now - started
            outcomes.withLock { $0[i] = (elapsed, bytes) }
        }
        for (source, outcome) in zip(hostile, outcomes.withLock { $0 }) {
            guard let (elapsed, bytes) = outcome else { XCTFail("\(source.debugDescription) was not rendered"); continue }
            XCTAssertLessThan(elapsed, .seconds(10), "\(source.debugDescription) ran \(elapsed)")
            XCTAssertLessThanOrEqual(bytes, ChatTemplate.maxOutputBytes, source.debugDescription)
        }
        // Ordinary uses of the same features still work.
        XCTAssertEqual(Self.render("{{ 'ab' * 3 }}"), "ababab")
        XCTAssertEqual(Self.render("{{ range(3) | list | length }}{{ 7 // -2 }}{{ 7 % -2 }}"), "3-4-1")
        XCTAssertEqual(Self.render("{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(-2) }}"), "a\n  b|a\nb")
    }

    /// Mutated real templates (the fixtures) and spliced-in hostile fragments: each renders or
    /// fails with a typed error within the time and output bounds.
    func testMutatedTemplatesNeverTrap() throws {
        let run = FuzzRun(short: 3000, salt: 3)
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/chat")
        var seeds: [String] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() where file.hasSuffix(".json") {
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent(file)))
            if let template = (object as? [String: Any])?["template"] as? String { seeds.append(template) }
        }
        XCTAssertGreaterThan(seeds.count, 3)
        let fragments = ["{% for x in range(1000) %}", "{% endfor %}", "{% if ", "{% endif %}", "{{ ", " }}", "((((((",
                         "[[[[[[", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", " * 99999999999 ", " // -1 ",
                         "|indent(-9)", "|tojson(indent=99999999)", "{% set ns = namespace(a=1) %}", "{%- raw -%}",
                         "{% endraw %}", "loop.", "messages[-9223372036854775807]", "'\u{FFFF}\u{10FFFF}'", "{#", "#}",
                         "|join(' ' * 100000000)", " ~ ", "{% break %}", "|center(9999999999)", "|truncate(-1)",
                         "|batch(0)", "|slice(0)", "|round(-9999999999)", "|wordwrap(0)"]
        var outcomes = (rendered: 0, refused: 0)
        let started = ContinuousClock.now
        for i in run.cases {
            var rng = SplitMix(seed: run.seed(ofCase: i))
            var bytes = Array(rng.pick(seeds).utf8)
            for _ in 0...rng.below(3) {
                if rng.oneIn(2) {
                    bytes.insert(contentsOf: Array(rng.pick(fragments).utf8), at: rng.below(bytes.count + 1))
                } else {
                    bytes = ByteMutator.mutate(bytes, &rng)
                }
            }
            let source = String(decoding: bytes, as: UTF8.self)
            let caseStart = ContinuousClock.now
            let out = Self.render(source)
            let elapsed = ContinuousClock.now - caseStart
            if out == nil { outcomes.refused += 1 } else { outcomes.rendered += 1 }
            XCTAssertLessThan(elapsed, .seconds(10), "case \(i) (CARAVAN_FUZZ_CASE=\(i)) ran \(elapsed)")
            XCTAssertLessThanOrEqual(out?.utf8.count ?? 0, ChatTemplate.maxOutputBytes, "case \(i) (seed \(run.seed(ofCase: i)))")
        }
        print("template fuzz: \(run.iterations) cases, \(outcomes.rendered) rendered, \(outcomes.refused) refused, "
              + "\(ContinuousClock.now - started), seed \(run.seed)")
    }
}
