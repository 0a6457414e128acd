/// A parsed chat template (the Jinja subset used by LLaMA-family `tokenizer.chat_template`s),
/// rendered the way HuggingFace transformers renders it (`trim_blocks` and `lstrip_blocks` on,
/// `tojson` without ASCII escaping, `raise_exception` and `strftime_now` available).
///
/// Supported: `{{ }}`, `{% %}`, `{# #}` with `-`/`+` whitespace control; `if/elif/else`, `for`
/// (with `loop.*`, `else`, inline `if` filter, tuple unpacking, `break`/`continue`), `set` (incl.
/// `namespace()` attributes and block set), `macro`, `raw`, `generation`; Python-like expressions,
/// common filters, tests and string/dict methods.
public struct ChatTemplate: Sendable {
    /// The template source.
    public let source: String
    let nodes: [Node]

    /// The most bytes a render produces, and the most any one string it builds holds; a template
    /// that would make more fails with `.render` (templates come from model files: input).
    public static let maxOutputBytes = 8 << 20

    /// Parses `source`; throws `ChatTemplateError.syntax` (with position) when it is malformed or
    /// uses an unknown filter, test or tag.
    public init(_ source: String) throws(ChatTemplateError) {
        self.source = source
        var lexer = Lexer(source)
        let tokens = try lexer.tokenize()
        var parser = Parser(tokens: tokens)
        nodes = try parser.parseTemplate()
    }

    /// Renders the conversation.
    ///
    /// Variables available to the template: `messages` (list of `{role, content}` dicts),
    /// `add_generation_prompt`, `bos_token`, `eos_token`, `tools` and `documents` (both `none`
    /// unless given, as in transformers), plus `variables` (which override all of these).
    /// Throws `.raised` when the template calls `raise_exception`, `.render` for runtime errors.
    public func render(
        messages: [ChatMessage],
        addGenerationPrompt: Bool,
        bosToken: String = "",
        eosToken: String = "",
        variables: [String: TemplateValue] = [:]
    ) throws(ChatTemplateError) -> String {
        var scope: [String: Value] = [
            "messages": .array(messages.map { m in
                var d = OrderedDict()
                d["role"] = .string(m.role)
                d["content"] = .string(m.content)
                return .dict(d)
            }),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": .string(bosToken),
            "eos_token": .string(eosToken),
            "tools": .none,
            "documents": .none,
        ]
        for (k, v) in variables { scope[k] = Value(v) }
        let renderer = Renderer(variables: scope)
        var out = ""
        let flow = try renderer.run(nodes, into: &out)
        guard flow == .normal else {
            throw .render(message: "'break' or 'continue' outside of a for loop", position: nil)
        }
        return out
    }
}
