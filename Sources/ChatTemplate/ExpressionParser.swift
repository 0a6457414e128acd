/// Expression grammar, following Jinja's precedence (lowest first): conditional, or, and, not,
/// comparisons and `in`, `+ -`, `~`, `* / // %`, `**`, unary `- +`, then primary with postfix
/// (`.attr`, `[item]`, `(call)`) and filters/tests (`| filter`, `is test`).
extension Parser {
    mutating func parseExpression(allowConditional: Bool = true) throws(ChatTemplateError) -> Expression {
        try enter()
        defer { depth -= 1 }
        guard allowConditional else { return try parseOr() }
        let value = try parseOr()
        if skipName("if") {
            let condition = try parseOr()
            var otherwise: Expression?
            if skipName("else") { otherwise = try parseExpression() }
            return .conditional(condition: condition, then: value, otherwise: otherwise)
        }
        return value
    }

    mutating func parseOr() throws(ChatTemplateError) -> Expression { try parseChain(.or) }

    mutating func parseNot() throws(ChatTemplateError) -> Expression {
        try enter()
        defer { depth -= 1 }
        if skipName("not") { return .not(try parseNot()) }
        return try parseCompare()
    }

    mutating func parseCompare() throws(ChatTemplateError) -> Expression {
        let pos = current.position
        let left = try parseMath1()
        var ops: [(op: CompareOperator, right: Expression)] = []
        while true {
            if case .op(let o) = current.kind, let op = CompareOperator(rawValue: o), op != .contains, op != .notContains {
                _ = advance()
                ops.append((op, try parseMath1()))
            } else if skipName("in") {
                ops.append((.contains, try parseMath1()))
            } else if isName("not"), index + 1 < tokens.count, tokens[index + 1].kind == .name("in") {
                _ = advance()
                _ = advance()
                ops.append((.notContains, try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? left : .compare(left, ops, pos)
    }

    mutating func parseMath1() throws(ChatTemplateError) -> Expression { try parseChain(.sum) }

    /// The binary operator levels, loosest first: each is a left-associative chain of the next
    /// (`or` of `and`s, `and` of `not`s; `+ -` of `~`s, `~` of `* / // %`s, those of `**`s, `**`
    /// of unary expressions).
    enum ChainLevel {
        case or, and, sum, concat, product, power

        /// Whether each look for the level's operator nests one level deeper (the arithmetic
        /// levels, the last look included), or only each operator found (`or`, `and`).
        var entersBeforeLooking: Bool {
            switch self {
            case .or, .and: false
            case .sum, .concat, .product, .power: true
            }
        }
    }

    /// `operand (operator operand)*` of `level`, joined from the left.
    mutating func parseChain(_ level: ChainLevel) throws(ChatTemplateError) -> Expression {
        var left = try parseOperand(of: level)
        var levels = 0
        defer { depth -= levels }
        while true {
            if level.entersBeforeLooking {
                try enter()
                levels += 1
            }
            guard let join = takeOperator(of: level, at: current.position) else { return left }
            if !level.entersBeforeLooking {
                try enter()
                levels += 1
            }
            left = join(left, try parseOperand(of: level))
        }
    }

    private mutating func parseOperand(of level: ChainLevel) throws(ChatTemplateError) -> Expression {
        switch level {
        case .or: try parseChain(.and)
        case .and: try parseNot()
        case .sum: try parseChain(.concat)
        case .concat: try parseChain(.product)
        case .product: try parseChain(.power)
        case .power: try parseUnary()
        }
    }

    /// Reads `level`'s operator at the current token and returns how it joins two operands; nil
    /// (nothing read) when the token is none of them.
    private mutating func takeOperator(of level: ChainLevel, at pos: SourcePosition) -> ((Expression, Expression) -> Expression)? {
        switch level {
        case .or: return skipName("or") ? { .or($0, $1) } : nil
        case .and: return skipName("and") ? { .and($0, $1) } : nil
        case .sum:
            if skipOp("+") { return { .binary(.add, $0, $1, pos) } }
            return skipOp("-") ? { .binary(.subtract, $0, $1, pos) } : nil
        case .concat: return skipOp("~") ? { .binary(.concat, $0, $1, pos) } : nil
        case .product:
            guard case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o), let op = BinaryOperator(rawValue: o) else { return nil }
            _ = advance()
            return { .binary(op, $0, $1, pos) }
        case .power: return skipOp("**") ? { .binary(.power, $0, $1, pos) } : nil
        }
    }

    mutating func parseUnary(withFilter: Bool = true) throws(ChatTemplateError) -> Expression {
        try enter()
        defer { depth -= 1 }
        let pos = current.position
        var node: Expression
        if skipOp("-") {
            node = .negate(try parseUnary(withFilter: false), pos)
        } else if skipOp("+") {
            node = .plus(try parseUnary(withFilter: false), pos)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpression(node) }
        return node
    }

    mutating func parsePrimary() throws(ChatTemplateError) -> Expression {
        let t = advance()
        switch t.kind {
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n, t.position)
            }
        case .string(var s):
            while case .string(let more) = current.kind {
                s += more
                _ = advance()
            }
            return .literal(.string(s))
        case .integer(let v): return .literal(.int(v))
        case .float(let v): return .literal(.double(v))
        case .op("("):
            if skipOp(")") { return .tuple([]) }
            let first = try parseExpression()
            if skipOp(")") { return first }
            var items = [first]
            while skipOp(",") {
                if isOp(")") { break }
                items.append(try parseExpression())
            }
            try expectOp(")")
            return .tuple(items)
        case .op("["):
            var items: [Expression] = []
            while !isOp("]") {
                items.append(try parseExpression())
                if !skipOp(",") { break }
            }
            try expectOp("]")
            return .list(items)
        case .op("{"):
            var pairs: [(key: Expression, value: Expression)] = []
            while !isOp("}") {
                let k = try parseExpression()
                try expectOp(":")
                pairs.append((k, try parseExpression()))
                if !skipOp(",") { break }
            }
            try expectOp("}")
            return .dict(pairs, t.position)
        default:
            throw error("unexpected \(describe(t)) in expression", t)
        }
    }

    mutating func parsePostfix(_ start: Expression) throws(ChatTemplateError) -> Expression {
        var node = start
        var levels = 0
        defer { depth -= levels }
        while true {
            try enter()
            levels += 1
            let pos = current.position
            if skipOp(".") {
                switch current.kind {
                case .name(let n):
                    _ = advance()
                    node = .attribute(node, n, pos)
                case .integer(let v):
                    _ = advance()
                    node = .item(node, .literal(.int(v)), pos)
                default:
                    throw error("expected an attribute name after '.', found \(describe(current))")
                }
            } else if skipOp("[") {
                node = try parseSubscript(node, pos)
            } else if isOp("(") {
                _ = advance()
                node = .call(node, try parseArguments(), pos)
            } else {
                return node
            }
        }
    }

    mutating func parseSubscript(_ target: Expression, _ pos: SourcePosition) throws(ChatTemplateError) -> Expression {
        var start: Expression?
        if !isOp(":") { start = try parseExpression() }
        if skipOp("]") {
            guard let start else { throw error("empty subscript") }
            return .item(target, start, pos)
        }
        try expectOp(":")
        var stop: Expression?
        var step: Expression?
        if !isOp(":") && !isOp("]") { stop = try parseExpression() }
        if skipOp(":") && !isOp("]") { step = try parseExpression() }
        try expectOp("]")
        return .slice(target, start: start, stop: stop, step: step, pos)
    }

    /// Parses call arguments after '(' up to and including ')'.
    mutating func parseArguments() throws(ChatTemplateError) -> Arguments {
        var args = Arguments()
        while !isOp(")") {
            if case .name(let n) = current.kind, index + 1 < tokens.count, tokens[index + 1].kind == .op("=") {
                _ = advance()
                _ = advance()
                args.keyword.append((n, try parseExpression()))
            } else {
                guard args.keyword.isEmpty else { throw error("positional argument after keyword argument") }
                args.positional.append(try parseExpression())
            }
            if !skipOp(",") { break }
        }
        try expectOp(")")
        return args
    }

    mutating func parseFilterExpression(_ start: Expression) throws(ChatTemplateError) -> Expression {
        var node = start
        var levels = 0
        defer { depth -= levels }
        while true {
            try enter()
            levels += 1
            let pos = current.position
            if skipOp("|") {
                let nameTok = current
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                guard Builtins.filterNames.contains(name) else { throw error("unknown filter '\(name)'", nameTok) }
                var args = Arguments()
                if skipOp("(") { args = try parseArguments() }
                node = .filter(node, name: name, args, nameTok.position)
            } else if skipName("is") {
                let negated = skipName("not")
                let nameTok = current
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                guard Builtins.testNames.contains(name) else { throw error("unknown test '\(name)'", nameTok) }
                var args = Arguments()
                if skipOp("(") {
                    args = try parseArguments()
                } else if startsBareTestArgument() {
                    let arg = try parsePostfix(try parsePrimary())
                    args.positional = [arg]
                }
                node = .test(node, name: name, args, negated: negated, pos)
            } else if isOp("(") {
                _ = advance()
                node = .call(node, try parseArguments(), pos)
            } else {
                return node
            }
        }
    }

    /// Whether the token after a test name starts an argument written without parentheses
    /// (`x is divisibleby 3`, `x is sameas false`).
    func startsBareTestArgument() -> Bool {
        switch current.kind {
        case .name(let n): return !["else", "or", "and", "if", "in", "not", "is"].contains(n)
        case .string, .integer, .float: return true
        case .op(let o): return o == "[" || o == "{"
        default: return false
        }
    }
}
