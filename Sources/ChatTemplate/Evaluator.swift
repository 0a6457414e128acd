/// Expression evaluation.
extension Renderer {
    func eval(_ e: Expression) throws(ChatTemplateError) -> Value {
        switch e {
        case .literal(let l):
            return Value(l)
        case .name(let n, _):
            return lookup(n)
        case .list(let items):
            var out: [Value] = []
            for item in items { out.append(try eval(item)) }
            return .array(out)
        case .tuple(let items):
            var out: [Value] = []
            for item in items { out.append(try eval(item)) }
            return .tuple(out)
        case .dict(let pairs, let pos):
            var d = OrderedDict()
            for p in pairs {
                let k = try eval(p.key)
                guard case .string(let key) = k else {
                    throw .render(message: "dictionary keys must be strings, got \(k.typeName)", position: pos)
                }
                d[key] = try eval(p.value)
            }
            return .dict(d)
        case .attribute(let target, let name, let pos):
            return try attribute(try eval(target), name, pos: pos)
        case .item(let target, let keyExpr, let pos):
            return try item(try eval(target), try eval(keyExpr), pos: pos)
        case .slice(let target, let start, let stop, let step, let pos):
            let v = try eval(target)
            return try slice(v, start: try start.map { e throws(ChatTemplateError) in try eval(e) },
                             stop: try stop.map { e throws(ChatTemplateError) in try eval(e) },
                             step: try step.map { e throws(ChatTemplateError) in try eval(e) }, pos: pos)
        case .call(let callee, let args, let pos):
            return try call(callee, args, pos: pos)
        case .filter(let input, let name, let args, let pos):
            let (positional, keyword) = try evalArguments(args)
            return try Builtins.filter(name, try eval(input), positional, keyword, renderer: self, pos: pos)
        case .test(let input, let name, let args, let negated, let pos):
            let (positional, _) = try evalArguments(args)
            let result = try Builtins.test(name, try eval(input), positional, pos: pos)
            return .bool(result != negated)
        case .negate(let inner, let pos):
            let v = try eval(inner)
            switch v {
            case .int(let i): return .int(-i)
            case .bool(let b): return .int(b ? -1 : 0)
            case .double(let d): return .double(-d)
            default: throw typeError("bad operand type for unary -: '\(v.typeName)'", v, pos)
            }
        case .plus(let inner, let pos):
            let v = try eval(inner)
            guard v.number != nil else { throw typeError("bad operand type for unary +: '\(v.typeName)'", v, pos) }
            return v
        case .not(let inner):
            return .bool(!(try eval(inner).isTruthy))
        case .and(let l, let r):
            let left = try eval(l)
            return left.isTruthy ? try eval(r) : left
        case .or(let l, let r):
            let left = try eval(l)
            return left.isTruthy ? left : try eval(r)
        case .binary(let op, let l, let r, let pos):
            return try Operators.binary(op, try eval(l), try eval(r), pos: pos)
        case .compare(let first, let rest, let pos):
            var left = try eval(first)
            for (op, rightExpr) in rest {
                let right = try eval(rightExpr)
                guard try Operators.compare(op, left, right, pos: pos) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let condition, let then, let otherwise):
            if try eval(condition).isTruthy { return try eval(then) }
            if let otherwise { return try eval(otherwise) }
            return .undefined("the inline if expression evaluated to false and has no else branch")
        }
    }

    /// The error for an operation on `value`: an undefined value reports why it is undefined.
    func typeError(_ message: String, _ value: Value, _ pos: SourcePosition?) -> ChatTemplateError {
        if case .undefined(let why) = value { return .render(message: why, position: pos) }
        return .render(message: message, position: pos)
    }

    func evalArguments(_ args: Arguments) throws(ChatTemplateError) -> ([Value], [(String, Value)]) {
        var positional: [Value] = []
        for a in args.positional { positional.append(try eval(a)) }
        var keyword: [(String, Value)] = []
        for k in args.keyword { keyword.append((k.name, try eval(k.value))) }
        return (positional, keyword)
    }

    func attribute(_ v: Value, _ name: String, pos: SourcePosition) throws(ChatTemplateError) -> Value {
        switch v {
        case .undefined(let why):
            throw .render(message: why, position: pos)
        case .dict(let d):
            return d[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .namespace(let ns):
            return ns.attributes[name] ?? .undefined("'Namespace' object has no attribute '\(name)'")
        default:
            return .undefined("'\(v.typeName) object' has no attribute '\(name)'")
        }
    }

    func item(_ v: Value, _ key: Value, pos: SourcePosition) throws(ChatTemplateError) -> Value {
        switch (v, key) {
        case (.undefined(let why), _):
            throw .render(message: why, position: pos)
        case (.dict(let d), .string(let k)):
            return d[k] ?? .undefined("'dict object' has no attribute '\(k)'")
        case (.namespace, .string(let k)):
            return try attribute(v, k, pos: pos)
        case (.array(let a), _), (.tuple(let a), _):
            guard let i = key.integer else {
                if case .string(let k) = key { return .undefined("'list object' has no attribute '\(k)'") }
                throw .render(message: "list indices must be integers, not \(key.typeName)", position: pos)
            }
            let j = i < 0 ? a.count + i : i
            return a.indices.contains(j) ? a[j] : .undefined("list index \(i) out of range")
        case (.string(let s), _):
            guard let i = key.integer else {
                return .undefined("'str object' has no attribute '\(key.text)'")
            }
            let scalars = Array(s.unicodeScalars)
            let j = i < 0 ? scalars.count + i : i
            return scalars.indices.contains(j) ? .string(String(scalars[j])) : .undefined("string index \(i) out of range")
        default:
            return .undefined("'\(v.typeName) object' has no attribute '\(key.text)'")
        }
    }

    func slice(_ v: Value, start: Value?, stop: Value?, step: Value?, pos: SourcePosition) throws(ChatTemplateError) -> Value {
        func bound(_ b: Value?) throws(ChatTemplateError) -> Int? {
            guard let b, !(b.isUndefined), !(Value.equal(b, .none)) else { return nil }
            guard let i = b.integer else {
                throw .render(message: "slice indices must be integers or none, not \(b.typeName)", position: pos)
            }
            return i
        }
        let st = try bound(step) ?? 1
        guard st != 0 else { throw .render(message: "slice step cannot be zero", position: pos) }
        func indices(_ count: Int) throws(ChatTemplateError) -> [Int] {
            // Python's slice.indices semantics.
            func clamp(_ x: Int?, _ defaultValue: Int) -> Int {
                guard var x else { return defaultValue }
                if x < 0 { x += count }
                if st > 0 { return min(max(x, 0), count) }
                return min(max(x, -1), count - 1)
            }
            let a = clamp(try bound(start), st > 0 ? 0 : count - 1)
            let b = clamp(try bound(stop), st > 0 ? count : -1)
            var out: [Int] = []
            var i = a
            while st > 0 ? i < b : i > b {
                out.append(i)
                i += st
            }
            return out
        }
        switch v {
        case .array(let arr):
            return .array(try indices(arr.count).map { arr[$0] })
        case .tuple(let arr):
            return .tuple(try indices(arr.count).map { arr[$0] })
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            var view = String.UnicodeScalarView()
            for i in try indices(scalars.count) { view.append(scalars[i]) }
            return .string(String(view))
        default:
            throw typeError("'\(v.typeName)' object is not subscriptable", v, pos)
        }
    }

    func call(_ callee: Expression, _ args: Arguments, pos: SourcePosition) throws(ChatTemplateError) -> Value {
        if case .attribute(let targetExpr, let name, let attrPos) = callee {
            let target = try eval(targetExpr)
            switch target {
            case .string, .dict, .array:
                if case .dict(let d) = target, let member = d[name], case .macro(let m) = member {
                    let (positional, keyword) = try evalArguments(args)
                    return try callMacro(m, positional, keyword, pos: pos)
                }
                let (positional, keyword) = try evalArguments(args)
                return try Builtins.method(name, on: target, positional, keyword, pos: pos)
            case .undefined(let why):
                throw .render(message: why, position: attrPos)
            default:
                break
            }
            return try callValue(try attribute(target, name, pos: attrPos), args, name: name, pos: pos)
        }
        let name: String
        if case .name(let n, _) = callee { name = n } else { name = "expression" }
        return try callValue(try eval(callee), args, name: name, pos: pos)
    }

    private func callValue(_ f: Value, _ args: Arguments, name: String, pos: SourcePosition) throws(ChatTemplateError) -> Value {
        let (positional, keyword) = try evalArguments(args)
        switch f {
        case .function(let fn):
            return try Builtins.callGlobal(fn, positional, keyword, pos: pos)
        case .macro(let m):
            return try callMacro(m, positional, keyword, pos: pos)
        case .undefined(let why):
            throw .render(message: why, position: pos)
        default:
            throw .render(message: "'\(f.typeName)' object is not callable", position: pos)
        }
    }
}
