/// Control flow out of a statement list.
enum Flow {
    case normal, breakLoop, continueLoop
}

/// Executes a parsed template. One instance per render call (it holds the variable scopes).
final class Renderer {
    /// Innermost scope last. Scope 0 holds the render variables.
    var scopes: [[String: Value]]
    private var macroDepth = 0
    /// Statements and loop iterations executed so far (bounded by ``RenderLimits/maxSteps``).
    private var steps = 0

    init(variables: [String: Value]) {
        scopes = [variables]
    }

    func lookup(_ name: String) -> Value {
        for scope in scopes.reversed() {
            if let v = scope[name] { return v }
        }
        if Builtins.globalFunctions.contains(name) { return .function(name) }
        return .undefined("'\(name)' is undefined")
    }

    func assign(_ name: String, _ value: Value) {
        scopes[scopes.count - 1][name] = value
    }

    /// Counts one statement or loop iteration against the render's budget.
    private func step(_ pos: SourcePosition?) throws(ChatTemplateError) {
        steps += 1
        guard steps <= RenderLimits.maxSteps else {
            throw .render(message: "the template runs more than \(RenderLimits.maxSteps) statements and loop iterations", position: pos)
        }
    }

    /// A value kept by `set` (across loop iterations it may grow): nested at most
    /// ``RenderLimits/maxNesting`` deep, so printing, serializing and freeing it stay shallow.
    private func storable(_ value: Value, _ pos: SourcePosition) throws(ChatTemplateError) -> Value {
        guard !value.nests(deeperThan: RenderLimits.maxNesting) else {
            throw .render(message: "the value set nests lists, dicts or namespaces more than \(RenderLimits.maxNesting) deep, "
                          + "holds more than \(RenderLimits.maxVisits) of them, or holds itself", position: pos)
        }
        return value
    }

    /// Appends `text` to `out` within ``RenderLimits/maxBytes``.
    private func write(_ text: String, into out: inout String) throws(ChatTemplateError) {
        try RenderLimits.checkString(out.utf8.count + text.utf8.count, nil)
        out += text
    }

    // MARK: Statements

    func run(_ nodes: [Node], into out: inout String) throws(ChatTemplateError) -> Flow {
        for node in nodes {
            let flow = try run(node, into: &out)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func run(_ node: Node, into out: inout String) throws(ChatTemplateError) -> Flow {
        try step(nil)
        switch node {
        case .text(let s):
            try write(s, into: &out)
        case .output(let e, _):
            try write(try eval(e).text, into: &out)
        case .conditional(let branches, let otherwise):
            for branch in branches where try eval(branch.condition).isTruthy {
                return try run(branch.body, into: &out)
            }
            return try run(otherwise, into: &out)
        case .forLoop(let targets, let iterableExpr, let filter, let body, let otherwise, let pos):
            return try runFor(targets: targets, iterableExpr: iterableExpr, filter: filter, body: body,
                              otherwise: otherwise, pos: pos, into: &out)
        case .set(let target, let expr, let pos):
            let value = try storable(try eval(expr), pos)
            switch target {
            case .names(let names) where names.count == 1:
                assign(names[0], value)
            case .names(let names):
                let items = try unpack(value, count: names.count, pos: pos)
                for (n, v) in zip(names, items) { assign(n, v) }
            case .attribute(let object, let attribute):
                guard case .namespace(let ns) = lookup(object) else {
                    throw .render(message: "cannot assign attribute '\(attribute)' on '\(object)': it is not a namespace()",
                                  position: pos)
                }
                // Checked with the value in place: `{% set ns.me = ns %}` makes a cycle.
                let previous = ns.attributes[attribute]
                ns.attributes[attribute] = value
                do {
                    _ = try storable(.namespace(ns), pos)
                } catch {
                    ns.attributes[attribute] = previous
                    throw error
                }
            }
        case .setBlock(let name, let body):
            var captured = ""
            _ = try run(body, into: &captured)
            assign(name, .string(captured))
        case .breakLoop(let pos):
            guard scopes.count > 1 else { throw .render(message: "'break' outside of a for loop", position: pos) }
            return .breakLoop
        case .continueLoop(let pos):
            guard scopes.count > 1 else { throw .render(message: "'continue' outside of a for loop", position: pos) }
            return .continueLoop
        case .macro(let m):
            assign(m.name, .macro(MacroValue(m)))
        }
        return .normal
    }

    private func unpack(_ value: Value, count: Int, pos: SourcePosition) throws(ChatTemplateError) -> [Value] {
        guard let items = value.elements else {
            throw .render(message: "cannot unpack \(value.typeName) into \(count) variables", position: pos)
        }
        guard items.count == count else {
            throw .render(message: "expected \(count) values to unpack, got \(items.count)", position: pos)
        }
        return items
    }

    func iterate(_ value: Value, pos: SourcePosition) throws(ChatTemplateError) -> [Value] {
        switch value {
        case .undefined: return []
        case .array(let a), .tuple(let a): return a
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        default: throw .render(message: "'\(value.typeName)' object is not iterable", position: pos)
        }
    }

    private func runFor(targets: [String], iterableExpr: Expression, filter: Expression?, body: [Node],
                        otherwise: [Node], pos: SourcePosition, into out: inout String) throws(ChatTemplateError) -> Flow {
        var items = try iterate(try eval(iterableExpr), pos: pos)
        if let filter {
            var kept: [Value] = []
            for item in items {
                try step(pos)
                scopes.append([:])
                try bind(targets, item, pos: pos)
                let keep = try eval(filter).isTruthy
                scopes.removeLast()
                if keep { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty { return try run(otherwise, into: &out) }
        let n = items.count
        for (i, item) in items.enumerated() {
            try step(pos)
            var loop = OrderedDict()
            loop["index"] = .int(i + 1)
            loop["index0"] = .int(i)
            loop["revindex"] = .int(n - i)
            loop["revindex0"] = .int(n - i - 1)
            loop["first"] = .bool(i == 0)
            loop["last"] = .bool(i == n - 1)
            loop["length"] = .int(n)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined("there is no previous item")
            loop["nextitem"] = i < n - 1 ? items[i + 1] : .undefined("there is no next item")
            scopes.append(["loop": .dict(loop)])
            try bind(targets, item, pos: pos)
            let flow: Flow
            do {
                flow = try run(body, into: &out)
            } catch {
                scopes.removeLast()
                throw error
            }
            scopes.removeLast()
            if flow == .breakLoop { break }
        }
        return .normal
    }

    private func bind(_ targets: [String], _ item: Value, pos: SourcePosition) throws(ChatTemplateError) {
        if targets.count == 1 {
            assign(targets[0], item)
        } else {
            for (n, v) in zip(targets, try unpack(item, count: targets.count, pos: pos)) { assign(n, v) }
        }
    }

    // MARK: Macros

    func callMacro(_ m: MacroValue, _ args: [Value], _ kwargs: [(String, Value)], pos: SourcePosition) throws(ChatTemplateError) -> Value {
        let macro = m.macro
        guard args.count <= macro.parameters.count else {
            throw .render(message: "macro '\(macro.name)' takes \(macro.parameters.count) arguments, got \(args.count)",
                          position: pos)
        }
        guard macroDepth < 100 else { throw .render(message: "macro recursion too deep", position: pos) }
        var scope: [String: Value] = [:]
        for (i, p) in macro.parameters.enumerated() {
            if i < args.count {
                scope[p.name] = args[i]
            } else if let kw = kwargs.first(where: { $0.0 == p.name }) {
                scope[p.name] = kw.1
            } else if let d = p.defaultValue {
                scope[p.name] = try eval(d)
            } else {
                scope[p.name] = .undefined("parameter '\(p.name)' of macro '\(macro.name)' was not provided")
            }
        }
        for (k, _) in kwargs where !macro.parameters.contains(where: { $0.name == k }) {
            throw .render(message: "macro '\(macro.name)' has no parameter '\(k)'", position: pos)
        }
        scopes.append(scope)
        macroDepth += 1
        defer {
            scopes.removeLast()
            macroDepth -= 1
        }
        var captured = ""
        _ = try run(macro.body, into: &captured)
        return .string(captured)
    }
}
