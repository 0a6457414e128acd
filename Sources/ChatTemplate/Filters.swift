/// Built-in filters, tests, methods and global functions.
enum Builtins {
    static let filterNames: Set<String> = [
        "trim", "length", "count", "upper", "lower", "default", "d", "tojson", "join", "first", "last",
        "items", "capitalize", "replace", "list", "selectattr", "rejectattr", "select", "reject", "map",
        "string", "int", "float", "abs", "reverse", "safe", "title", "unique", "sort", "sum", "indent",
        "round", "min", "max", "dictsort", "wordcount", "e", "escape", "format",
    ]

    static let globalFunctions: Set<String> = ["raise_exception", "namespace", "range", "dict", "strftime_now"]

    /// Looks up an argument by position or keyword.
    static func argument(_ positional: [Value], _ keyword: [(String, Value)], _ index: Int, _ name: String) -> Value? {
        if index < positional.count { return positional[index] }
        return keyword.first { $0.0 == name }?.1
    }

    static func requireString(_ v: Value, _ what: String, _ pos: SourcePosition) throws(ChatTemplateError) -> String {
        switch v {
        case .string(let s): return s
        case .undefined(let why): throw .render(message: why, position: pos)
        default: throw .render(message: "\(what) expects a string, got \(v.typeName)", position: pos)
        }
    }

    static func filter(_ name: String, _ input: Value, _ args: [Value], _ kwargs: [(String, Value)],
                       renderer: Renderer, pos: SourcePosition) throws(ChatTemplateError) -> Value {
        func arg(_ i: Int, _ n: String) -> Value? { argument(args, kwargs, i, n) }
        switch name {
        case "trim":
            let chars = arg(0, "chars").flatMap { if case .string(let s) = $0 { return s } else { return nil } }
            return .string(ScalarString.strip(input.text, chars: chars, leading: true, trailing: true))
        case "length", "count":
            switch input {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a), .tuple(let a): return .int(a.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw .render(message: "object of type '\(input.typeName)' has no len()", position: pos)
            }
        case "upper": return .string(ScalarString.upper(input.text))
        case "lower": return .string(ScalarString.lower(input.text))
        case "capitalize": return .string(ScalarString.capitalize(input.text))
        case "title": return .string(jinjaTitle(input.text))
        case "string": return .string(input.text)
        case "safe", "e", "escape": return input
        case "default", "d":
            let fallback = arg(0, "default_value") ?? .string("")
            let boolean = arg(1, "boolean")?.isTruthy ?? false
            if input.isUndefined || (boolean && !input.isTruthy) { return fallback }
            return input
        case "tojson":
            let indent = arg(0, "indent")?.integer
            return .string(try JSON.encode(input, indent: indent, pos: pos))
        case "join":
            let separator = arg(0, "d")?.text ?? ""
            var items = try renderer.iterate(input, pos: pos)
            if let attr = arg(1, "attribute") {
                items = try items.map { v throws(ChatTemplateError) in try renderer.item(v, attr, pos: pos) }
            }
            var parts: [String] = []
            var bytes = 0
            for item in items {
                let part = item.text
                bytes += part.utf8.count + separator.utf8.count
                try RenderLimits.checkString(bytes, pos)
                parts.append(part)
            }
            return .string(parts.joined(separator: separator))
        case "first":
            return try renderer.iterate(input, pos: pos).first ?? .undefined("no first item, sequence was empty")
        case "last":
            return try renderer.iterate(input, pos: pos).last ?? .undefined("no last item, sequence was empty")
        case "items":
            switch input {
            case .undefined: return .array([])
            case .dict(let d): return .array(d.pairs.map { .tuple([.string($0.0), $0.1]) })
            default: throw .render(message: "items filter expects a mapping, got \(input.typeName)", position: pos)
            }
        case "dictsort":
            guard case .dict(let d) = input else {
                throw .render(message: "dictsort expects a mapping, got \(input.typeName)", position: pos)
            }
            let pairs = d.pairs.sorted { $0.0.lowercased() < $1.0.lowercased() }
            return .array(pairs.map { .tuple([.string($0.0), $0.1]) })
        case "replace":
            let old = try requireString(arg(0, "old") ?? .undefined("replace needs 'old'"), "replace", pos)
            let new = try requireString(arg(1, "new") ?? .undefined("replace needs 'new'"), "replace", pos)
            let count = arg(2, "count")?.integer ?? -1
            return .string(try ScalarString.replace(input.text, old, new, count: count, pos: pos))
        case "list":
            return .array(try renderer.iterate(input, pos: pos))
        case "reverse":
            if case .string(let s) = input { return .string(ScalarString.make(s.unicodeScalars.reversed())) }
            return .array(try renderer.iterate(input, pos: pos).reversed())
        case "unique":
            var out: [Value] = []
            for v in try renderer.iterate(input, pos: pos) where !out.contains(where: { Value.equal($0, v) }) {
                out.append(v)
            }
            return .array(out)
        case "selectattr", "rejectattr", "select", "reject":
            let byAttribute = name.hasSuffix("attr")
            let keep = name.hasPrefix("select")
            var rest = args
            var attribute: Value?
            if byAttribute {
                guard !rest.isEmpty else { throw .render(message: "\(name) needs an attribute name", position: pos) }
                attribute = rest.removeFirst()
            }
            var testName: String?
            if !rest.isEmpty { testName = try requireString(rest.removeFirst(), name, pos) }
            if let t = testName, !testNames.contains(t) {
                throw .render(message: "unknown test '\(t)' in \(name)", position: pos)
            }
            var out: [Value] = []
            for v in try renderer.iterate(input, pos: pos) {
                var subject = v
                if let attribute {
                    subject = try lookupAttribute(v, attribute, renderer: renderer, pos: pos)
                }
                let passed = try testName.map { t throws(ChatTemplateError) in try test(t, subject, rest, pos: pos) }
                    ?? subject.isTruthy
                if passed == keep { out.append(v) }
            }
            return .array(out)
        case "map":
            let items = try renderer.iterate(input, pos: pos)
            if let attribute = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = kwargs.first { $0.0 == "default" }?.1
                return .array(try items.map { v throws(ChatTemplateError) in
                    let r = try lookupAttribute(v, attribute, renderer: renderer, pos: pos)
                    return r.isUndefined ? (fallback ?? r) : r
                })
            }
            guard let first = args.first else { throw .render(message: "map needs a filter name or attribute=", position: pos) }
            let filterName = try requireString(first, "map", pos)
            guard filterNames.contains(filterName), filterName != "map" else {
                throw .render(message: "unknown filter '\(filterName)' in map", position: pos)
            }
            let rest = Array(args.dropFirst())
            return .array(try items.map { v throws(ChatTemplateError) in
                try filter(filterName, v, rest, kwargs, renderer: renderer, pos: pos)
            })
        case "int":
            switch input {
            case .int: return input
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return d.isFinite ? .int(Int(d)) : (arg(0, "default") ?? .int(0))
            case .string(let s):
                let t = ScalarString.strip(s, chars: nil, leading: true, trailing: true)
                if let i = Int(t) { return .int(i) }
                if let d = Double(t), d.isFinite { return .int(Int(d)) }
                return arg(0, "default") ?? .int(0)
            default: return arg(0, "default") ?? .int(0)
            }
        case "float":
            if let n = input.number { return .double(n) }
            if case .string(let s) = input, let d = Double(ScalarString.strip(s, chars: nil, leading: true, trailing: true)) {
                return .double(d)
            }
            return arg(0, "default") ?? .double(0)
        case "abs":
            switch input {
            case .int(let i): return .int(abs(i))
            case .double(let d): return .double(abs(d))
            case .bool(let b): return .int(b ? 1 : 0)
            default: throw .render(message: "bad operand type for abs(): '\(input.typeName)'", position: pos)
            }
        case "round":
            guard let x = input.number else { throw .render(message: "round expects a number", position: pos) }
            let precision = arg(0, "precision")?.integer ?? 0
            let method = arg(1, "method")?.text ?? "common"
            if case .int = input, method == "common", precision >= 0 { return input }
            var scale = 1.0
            for _ in 0..<abs(precision) { scale *= 10 }
            let scaled = precision >= 0 ? x * scale : x / scale
            let rule: FloatingPointRoundingRule = method == "ceil" ? .up : (method == "floor" ? .down : .toNearestOrAwayFromZero)
            let r = scaled.rounded(rule)
            return .double(precision >= 0 ? r / scale : r * scale)
        case "sum":
            var total: Value = arg(1, "start") ?? .int(0)
            for v in try renderer.iterate(input, pos: pos) {
                let term = try arg(0, "attribute").map { a throws(ChatTemplateError) in
                    try lookupAttribute(v, a, renderer: renderer, pos: pos)
                } ?? v
                total = try Operators.binary(.add, total, term, pos: pos)
            }
            return total
        case "min", "max":
            let items = try renderer.iterate(input, pos: pos)
            guard var best = items.first else { return .undefined("\(name) of an empty sequence") }
            for v in items.dropFirst() {
                guard let o = Operators.order(v, best) else {
                    throw .render(message: "cannot compare \(v.typeName) and \(best.typeName)", position: pos)
                }
                if (name == "min" && o < 0) || (name == "max" && o > 0) { best = v }
            }
            return best
        case "sort":
            let reverse = arg(0, "reverse")?.isTruthy ?? false
            let attribute = arg(2, "attribute")
            var items: [(key: Value, value: Value)] = []
            for v in try renderer.iterate(input, pos: pos) {
                let key = try attribute.map { a throws(ChatTemplateError) in
                    try lookupAttribute(v, a, renderer: renderer, pos: pos)
                } ?? v
                items.append((key, v))
            }
            var failed = false
            items.sort { a, b in
                guard let o = Operators.order(a.key, b.key) else { failed = true; return false }
                return reverse ? o > 0 : o < 0
            }
            if failed { throw .render(message: "sort: values cannot be compared", position: pos) }
            return .array(items.map(\.value))
        case "indent":
            let width = arg(0, "width")
            let text = input.text
            var lines = ScalarString.split(text, separator: "\n", maxSplit: -1)
            // Python: `' ' * width` (none when negative); at most one prefix per line, bounded.
            let spaces = try RenderLimits.repetitions(width?.integer ?? 4, of: lines.count, limit: RenderLimits.maxBytes, pos)
            let prefix: String = width.flatMap { if case .string(let s) = $0 { return s } else { return nil } }
                ?? String(repeating: " ", count: spaces)
            try RenderLimits.checkString(text.utf8.count + prefix.utf8.count * lines.count, pos)
            let indentFirst = arg(1, "first")?.isTruthy ?? false
            let indentBlank = arg(2, "blank")?.isTruthy ?? false
            for i in lines.indices where (i > 0 || indentFirst) && (indentBlank || !lines[i].isEmpty) {
                lines[i] = prefix + lines[i]
            }
            return .string(lines.joined(separator: "\n"))
        case "format":
            if !kwargs.isEmpty { throw .render(message: "format filter: keyword arguments are not supported", position: pos) }
            return .string(try PercentFormat.format(input.text, .tuple(args), pos: pos))
        case "wordcount":
            return .int(ScalarString.split(input.text, separator: nil, maxSplit: -1).count)
        default:
            throw .render(message: "unknown filter '\(name)'", position: pos)
        }
    }

    /// `attribute` may be dotted ("a.b") or an integer index, as in Jinja's `make_attrgetter`.
    static func lookupAttribute(_ v: Value, _ attribute: Value, renderer: Renderer, pos: SourcePosition) throws(ChatTemplateError) -> Value {
        guard case .string(let path) = attribute else { return try renderer.item(v, attribute, pos: pos) }
        var current = v
        for part in ScalarString.split(path, separator: ".", maxSplit: -1) {
            if current.isUndefined { return current }
            let key: Value = Int(part).map { .int($0) } ?? .string(part)
            current = try renderer.item(current, key, pos: pos)
        }
        return current
    }

    /// Jinja's `title` filter: words start after whitespace, '-', or an opening bracket.
    static func jinjaTitle(_ s: String) -> String {
        var out = ""
        var atWordStart = true
        for c in s.unicodeScalars {
            let isDelimiter = ScalarString.isSpace(c) || "-([{<".unicodeScalars.contains(c)
            if isDelimiter {
                out.unicodeScalars.append(c)
                atWordStart = true
            } else {
                out += atWordStart ? String(c).uppercased() : String(c).lowercased()
                atWordStart = false
            }
        }
        return out
    }
}
