/// Parses template tokens into statement nodes.
struct Parser {
    var tokens: [Token]
    var index = 0
    /// Current nesting depth of blocks and sub-expressions (bounded to keep recursion safe on
    /// hostile input).
    var depth = 0
    static let maximumDepth = 500

    /// Enters one nesting level; throws when the template nests too deeply.
    mutating func enter() throws(ChatTemplateError) {
        depth += 1
        guard depth <= Parser.maximumDepth else {
            throw error("template nests too deeply (more than \(Parser.maximumDepth) levels)")
        }
    }

    init(tokens: [Token]) {
        self.tokens = tokens
    }

    var current: Token { tokens[index] }

    func error(_ message: String, _ token: Token? = nil) -> ChatTemplateError {
        .syntax(message: message, position: (token ?? current).position)
    }

    mutating func advance() -> Token {
        let t = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return t
    }

    func isOp(_ op: String) -> Bool { current.kind == .op(op) }
    func isName(_ name: String) -> Bool { current.kind == .name(name) }

    mutating func skipOp(_ op: String) -> Bool {
        if isOp(op) { _ = advance(); return true }
        return false
    }

    mutating func skipName(_ name: String) -> Bool {
        if isName(name) { _ = advance(); return true }
        return false
    }

    mutating func expectOp(_ op: String) throws(ChatTemplateError) {
        guard skipOp(op) else { throw error("expected '\(op)', found \(describe(current))") }
    }

    mutating func expectName() throws(ChatTemplateError) -> String {
        guard case .name(let n) = current.kind else { throw error("expected a name, found \(describe(current))") }
        _ = advance()
        return n
    }

    mutating func expectBlockEnd() throws(ChatTemplateError) {
        guard current.kind == .blockEnd else { throw error("expected '%}', found \(describe(current))") }
        _ = advance()
    }

    func describe(_ t: Token) -> String {
        switch t.kind {
        case .text: return "text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string '\(s)'"
        case .integer(let v): return "number \(v)"
        case .float(let v): return "number \(v)"
        case .op(let o): return "'\(o)'"
        case .end: return "end of template"
        }
    }

    // MARK: Statements

    /// Parses the whole template.
    mutating func parseTemplate() throws(ChatTemplateError) -> [Node] {
        let (nodes, endTag) = try parseBody(until: [], opener: nil)
        precondition(endTag == nil)
        return nodes
    }

    /// Parses nodes until a block tag whose name is in `until` (consumed up to the tag name; the
    /// name is returned) or the end of input (allowed only when `until` is empty).
    mutating func parseBody(until: Set<String>, opener: (String, Token)?) throws(ChatTemplateError) -> ([Node], String?) {
        try enter()
        defer { depth -= 1 }
        var nodes: [Node] = []
        while true {
            let t = current
            switch t.kind {
            case .end:
                if let (name, tok) = opener {
                    let wanted = until.sorted().map { "'\($0)'" }.joined(separator: " or ")
                    throw error("unclosed '\(name)' block opened at \(tok.position): expected \(wanted) before the end of the template", tok)
                }
                return (nodes, nil)
            case .text(let s):
                _ = advance()
                nodes.append(.text(s))
            case .variableBegin:
                _ = advance()
                let e = try parseExpression()
                guard current.kind == .variableEnd else { throw error("expected '}}', found \(describe(current))") }
                _ = advance()
                nodes.append(.output(e, t.position))
            case .blockBegin:
                _ = advance()
                let nameTok = current
                let name = try expectName()
                if until.contains(name) { return (nodes, name) }
                if let (openName, openTok) = opener, Parser.closingTags.contains(name) {
                    let wanted = until.sorted().map { "'\($0)'" }.joined(separator: " or ")
                    throw error("unexpected '\(name)' inside the '\(openName)' block opened at \(openTok.position) (expected \(wanted))", nameTok)
                }
                if let node = try parseStatement(name, nameTok) { nodes.append(contentsOf: node) }
            default:
                throw error("unexpected \(describe(t))")
            }
        }
    }

    static let closingTags: Set<String> = ["endif", "endfor", "endset", "endmacro", "else", "elif", "endgeneration", "endraw"]

    mutating func parseStatement(_ name: String, _ tok: Token) throws(ChatTemplateError) -> [Node]? {
        switch name {
        case "if": return [try parseIf(tok)]
        case "for": return [try parseFor(tok)]
        case "set": return [try parseSet(tok)]
        case "macro": return [try parseMacro(tok)]
        case "break":
            try expectBlockEnd()
            return [.breakLoop(tok.position)]
        case "continue":
            try expectBlockEnd()
            return [.continueLoop(tok.position)]
        case "generation":
            // HuggingFace's AssistantTracker extension: renders its body unchanged.
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"], opener: ("generation", tok))
            try expectBlockEnd()
            return body
        case "endif", "endfor", "endset", "endmacro", "else", "elif", "endgeneration", "endraw":
            throw error("unexpected '\(name)' tag with no open block to close", tok)
        default:
            throw error("unknown or unsupported tag '\(name)'", tok)
        }
    }

    mutating func parseIf(_ tok: Token) throws(ChatTemplateError) -> Node {
        var branches: [(condition: Expression, body: [Node])] = []
        var condition = try parseExpression()
        try expectBlockEnd()
        while true {
            let (body, end) = try parseBody(until: ["elif", "else", "endif"], opener: ("if", tok))
            branches.append((condition, body))
            switch end {
            case "elif":
                condition = try parseExpression()
                try expectBlockEnd()
            case "else":
                try expectBlockEnd()
                let (otherwise, _) = try parseBody(until: ["endif"], opener: ("if", tok))
                try expectBlockEnd()
                return .conditional(branches: branches, otherwise: otherwise)
            default:
                try expectBlockEnd()
                return .conditional(branches: branches, otherwise: [])
            }
        }
    }

    mutating func parseFor(_ tok: Token) throws(ChatTemplateError) -> Node {
        var targets = [try expectName()]
        while skipOp(",") { targets.append(try expectName()) }
        guard skipName("in") else { throw error("expected 'in' in for loop, found \(describe(current))") }
        let iterable = try parseOr()
        var filter: Expression?
        if skipName("if") { filter = try parseExpression(allowConditional: false) }
        if isName("recursive") { throw error("recursive for loops are not supported") }
        try expectBlockEnd()
        let (body, end) = try parseBody(until: ["else", "endfor"], opener: ("for", tok))
        var otherwise: [Node] = []
        try expectBlockEnd()
        if end == "else" {
            (otherwise, _) = try parseBody(until: ["endfor"], opener: ("for", tok))
            try expectBlockEnd()
        }
        return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise,
                        tok.position)
    }

    mutating func parseSet(_ tok: Token) throws(ChatTemplateError) -> Node {
        let first = try expectName()
        let target: SetTarget
        if skipOp(".") {
            target = .attribute(object: first, attribute: try expectName())
        } else {
            var names = [first]
            while skipOp(",") { names.append(try expectName()) }
            target = .names(names)
        }
        if skipOp("=") {
            var value = try parseExpression()
            if isOp(",") {
                var items = [value]
                while skipOp(",") { items.append(try parseExpression()) }
                value = .tuple(items)
            }
            try expectBlockEnd()
            return .set(target, value, tok.position)
        }
        guard case .names(let names) = target, names.count == 1 else {
            throw error("block 'set' needs a single variable name", tok)
        }
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endset"], opener: ("set", tok))
        try expectBlockEnd()
        return .setBlock(names[0], body: body)
    }

    mutating func parseMacro(_ tok: Token) throws(ChatTemplateError) -> Node {
        let name = try expectName()
        try expectOp("(")
        var parameters: [(name: String, defaultValue: Expression?)] = []
        while !isOp(")") {
            let p = try expectName()
            var d: Expression?
            if skipOp("=") { d = try parseExpression() }
            parameters.append((p, d))
            if !skipOp(",") { break }
        }
        try expectOp(")")
        try expectBlockEnd()
        let (body, _) = try parseBody(until: ["endmacro"], opener: ("macro", tok))
        if case .name = current.kind { _ = advance() }  // optional macro name after endmacro
        try expectBlockEnd()
        return .macro(Macro(name: name, parameters: parameters, body: body))
    }
}
