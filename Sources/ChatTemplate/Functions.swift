#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

/// Tests (`is ...`), methods on strings/dicts, and global functions.
extension Builtins {
    static let testNames: Set<String> = [
        "defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true", "false",
        "mapping", "iterable", "sequence", "callable", "odd", "even", "divisibleby", "eq", "equalto", "ne",
        "lt", "lessthan", "le", "gt", "greaterthan", "ge", "in", "lower", "upper", "sameas",
    ]

    static func test(_ name: String, _ v: Value, _ args: [Value], pos: SourcePosition) throws(ChatTemplateError) -> Bool {
        func other() throws(ChatTemplateError) -> Value {
            guard let a = args.first else { throw .render(message: "test '\(name)' needs an argument", position: pos) }
            return a
        }
        func ordered(_ ok: (Int) -> Bool) throws(ChatTemplateError) -> Bool {
            let b = try other()
            guard let o = Operators.order(v, b) else {
                throw .render(message: "cannot compare \(v.typeName) and \(b.typeName)", position: pos)
            }
            return ok(o)
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true } else { return false }
        case "string": if case .string = v { return true } else { return false }
        case "number":
            switch v {
            case .int, .double, .bool: return true
            default: return false
            }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "mapping": if case .dict = v { return true } else { return false }
        case "iterable", "sequence":
            switch v {
            case .string, .array, .tuple, .dict: return true
            default: return false
            }
        case "callable":
            switch v {
            case .function, .macro: return true
            default: return false
            }
        case "odd", "even":
            guard let i = v.integer else { throw .render(message: "test '\(name)' needs an integer, got \(v.typeName)", position: pos) }
            return (abs(i) % 2 == 1) == (name == "odd")
        case "divisibleby":
            guard let i = v.integer, let d = try other().integer, d != 0 else {
                throw .render(message: "test 'divisibleby' needs non-zero integers", position: pos)
            }
            return i % d == 0
        case "eq", "equalto": return Value.equal(v, try other())
        case "ne": return !Value.equal(v, try other())
        case "lt", "lessthan": return try ordered { $0 < 0 }
        case "le": return try ordered { $0 <= 0 }
        case "gt", "greaterthan": return try ordered { $0 > 0 }
        case "ge": return try ordered { $0 >= 0 }
        case "in": return try Operators.contains(try other(), v, pos: pos)
        case "lower": if case .string(let s) = v { return s == s.lowercased() } else { return false }
        case "upper": if case .string(let s) = v { return s == s.uppercased() } else { return false }
        case "sameas":
            let b = try other()
            switch (v, b) {
            case (.none, .none): return true
            case (.bool(let x), .bool(let y)): return x == y
            case (.namespace(let x), .namespace(let y)): return x === y
            default: return false
            }
        default:
            throw .render(message: "unknown test '\(name)'", position: pos)
        }
    }

    // MARK: Methods

    static func method(_ name: String, on target: Value, _ args: [Value], _ kwargs: [(String, Value)],
                       pos: SourcePosition) throws(ChatTemplateError) -> Value {
        func arg(_ i: Int, _ n: String) -> Value? { argument(args, kwargs, i, n) }
        func optionalString(_ i: Int, _ n: String) throws(ChatTemplateError) -> String? {
            guard let v = arg(i, n) else { return nil }
            if case .none = v { return nil }
            return try requireString(v, "\(name)()", pos)
        }
        switch target {
        case .string(let s):
            switch name {
            case "strip": return .string(ScalarString.strip(s, chars: try optionalString(0, "chars"), leading: true, trailing: true))
            case "lstrip": return .string(ScalarString.strip(s, chars: try optionalString(0, "chars"), leading: true, trailing: false))
            case "rstrip": return .string(ScalarString.strip(s, chars: try optionalString(0, "chars"), leading: false, trailing: true))
            case "upper": return .string(ScalarString.upper(s))
            case "lower": return .string(ScalarString.lower(s))
            case "title": return .string(ScalarString.title(s))
            case "capitalize": return .string(ScalarString.capitalize(s))
            case "startswith", "endswith":
                guard let p = arg(0, "prefix") else { throw .render(message: "\(name)() needs an argument", position: pos) }
                var candidates: [String] = []
                switch p {
                case .string(let x): candidates = [x]
                case .array(let xs), .tuple(let xs):
                    for x in xs { candidates.append(try requireString(x, "\(name)()", pos)) }
                default: throw .render(message: "\(name)() argument must be str or a tuple of str, not \(p.typeName)", position: pos)
                }
                let a = Array(s.unicodeScalars)
                return .bool(candidates.contains { c in
                    let b = Array(c.unicodeScalars)
                    return b.count <= a.count && (name == "startswith" ? a.prefix(b.count).elementsEqual(b) : a.suffix(b.count).elementsEqual(b))
                })
            case "split":
                let sep = try optionalString(0, "sep")
                if sep == "" { throw .render(message: "split(): empty separator", position: pos) }
                let maxSplit = arg(1, "maxsplit")?.integer ?? -1
                return .array(ScalarString.split(s, separator: sep, maxSplit: maxSplit).map { .string($0) })
            case "splitlines":
                var lines = ScalarString.split(s, separator: "\n", maxSplit: -1)
                if lines.last == "" { lines.removeLast() }
                return .array(lines.map { .string($0) })
            case "replace":
                let old = try requireString(arg(0, "old") ?? .undefined("replace() needs 'old'"), "replace()", pos)
                let new = try requireString(arg(1, "new") ?? .undefined("replace() needs 'new'"), "replace()", pos)
                return .string(try ScalarString.replace(s, old, new, count: arg(2, "count")?.integer ?? -1, pos: pos))
            case "find":
                let needle = try requireString(arg(0, "sub") ?? .undefined("find() needs an argument"), "find()", pos)
                return .int(ScalarString.find(Array(needle.unicodeScalars), in: Array(s.unicodeScalars)) ?? -1)
            case "count":
                let needle = try requireString(arg(0, "sub") ?? .undefined("count() needs an argument"), "count()", pos)
                let n = Array(needle.unicodeScalars), a = Array(s.unicodeScalars)
                var c = 0, i = 0
                if n.isEmpty { return .int(a.count + 1) }
                while let j = ScalarString.find(n, in: a, from: i) { c += 1; i = j + n.count }
                return .int(c)
            case "join":
                guard let xs = arg(0, "iterable")?.elements else {
                    throw .render(message: "join() expects a list", position: pos)
                }
                var parts: [String] = []
                var bytes = 0
                for x in xs {
                    let part = try requireString(x, "join()", pos)
                    bytes += part.utf8.count + s.utf8.count
                    try RenderLimits.checkString(bytes, pos)
                    parts.append(part)
                }
                return .string(parts.joined(separator: s))
            case "removeprefix", "removesuffix":
                let affix = try requireString(arg(0, "affix") ?? .undefined("\(name)() needs an argument"), name, pos)
                let a = Array(s.unicodeScalars), b = Array(affix.unicodeScalars)
                if name == "removeprefix", a.starts(with: b) { return .string(ScalarString.make(a.dropFirst(b.count))) }
                if name == "removesuffix", !b.isEmpty, a.suffix(b.count).elementsEqual(b) {
                    return .string(ScalarString.make(a.dropLast(b.count)))
                }
                return target
            case "isdigit", "isalpha", "isspace", "isupper", "islower":
                let a = Array(s.unicodeScalars)
                guard !a.isEmpty else { return .bool(false) }
                switch name {
                case "isdigit": return .bool(a.allSatisfy { $0.properties.numericType == .decimal })
                case "isalpha": return .bool(a.allSatisfy { $0.properties.isAlphabetic })
                case "isspace": return .bool(a.allSatisfy { $0.properties.isWhitespace })
                case "isupper": return .bool(s == s.uppercased() && s != s.lowercased())
                default: return .bool(s == s.lowercased() && s != s.uppercased())
                }
            default: break
            }
        case .dict(let d):
            switch name {
            case "items": return .array(d.pairs.map { .tuple([.string($0.0), $0.1]) })
            case "keys": return .array(d.keys.map { .string($0) })
            case "values": return .array(d.pairs.map { $0.1 })
            case "get":
                guard let k = arg(0, "key") else { throw .render(message: "get() needs a key", position: pos) }
                if case .string(let key) = k, let v = d[key] { return v }
                return arg(1, "default") ?? .none
            default: break
            }
        default: break
        }
        throw .render(message: "'\(target.typeName)' object has no method '\(name)'", position: pos)
    }

    // MARK: Global functions

    static func callGlobal(_ name: String, _ args: [Value], _ kwargs: [(String, Value)],
                           pos: SourcePosition) throws(ChatTemplateError) -> Value {
        switch name {
        case "raise_exception":
            throw .raised(message: args.first?.text ?? "")
        case "namespace", "dict":
            var attrs = OrderedDict()
            if let first = args.first, case .dict(let d) = first {
                for (k, v) in d.pairs { attrs[k] = v }
            }
            for (k, v) in kwargs { attrs[k] = v }
            return name == "dict" ? .dict(attrs) : .namespace(Namespace(attrs))
        case "range":
            var ints: [Int] = []
            for a in args {
                guard let i = a.integer else { throw .render(message: "range() needs integers, got \(a.typeName)", position: pos) }
                ints.append(i)
            }
            let (start, stop, step): (Int, Int, Int)
            switch ints.count {
            case 1: (start, stop, step) = (0, ints[0], 1)
            case 2: (start, stop, step) = (ints[0], ints[1], 1)
            case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
            default: throw .render(message: "range() takes 1 to 3 arguments", position: pos)
            }
            guard step != 0 else { throw .render(message: "range() step must not be zero", position: pos) }
            // Counted before it is built: `range(2**62)` must not allocate.
            let count = try RenderLimits.rangeCount(start: start, stop: stop, step: step, pos)
            return .array((0..<count).map { .int(start &+ $0 &* step) })
        case "strftime_now":
            let format = try requireString(args.first ?? .undefined("strftime_now() needs a format"), "strftime_now()", pos)
            return .string(formatNow(format))
        default:
            throw .render(message: "'\(name)' is undefined", position: pos)
        }
    }

    /// Current local time formatted with C `strftime` (HuggingFace's `strftime_now`).
    static func formatNow(_ format: String) -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 256)
        let n = strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// JSON as HuggingFace's `tojson` filter writes it: `json.dumps(x, ensure_ascii=False, indent=indent)`.
enum JSON {
    static func encode(_ v: Value, indent: Int?, pos: SourcePosition) throws(ChatTemplateError) -> String {
        var out = ""
        // Python indents by `' ' * indent`: a negative indent is none. Bounded like any string.
        let width = try indent.map { i throws(ChatTemplateError) in
            try RenderLimits.repetitions(i, of: RenderLimits.maxNesting, limit: RenderLimits.maxBytes, pos) }
        try write(v, indent: width, level: 0, into: &out, pos: pos)
        return out
    }

    private static func write(_ v: Value, indent: Int?, level: Int, into out: inout String,
                              pos: SourcePosition) throws(ChatTemplateError) {
        guard level < RenderLimits.maxNesting else {
            throw .render(message: "tojson: values nested more than \(RenderLimits.maxNesting) deep", position: pos)
        }
        try RenderLimits.checkString(out.utf8.count, pos)
        let itemSeparator = indent == nil ? ", " : ","
        func newline(_ l: Int) {
            if let indent { out += "\n" + String(repeating: " ", count: indent * l) }
        }
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else {
                out += Value.formatDouble(d)
            }
        case .string(let s): out += quote(s)
        case .array(let a), .tuple(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, x) in a.enumerated() {
                if i > 0 { out += itemSeparator }
                newline(level + 1)
                try write(x, indent: indent, level: level + 1, into: &out, pos: pos)
            }
            newline(level)
            out += "]"
        case .dict(let d):
            if d.count == 0 { out += "{}"; return }
            out += "{"
            for (i, (k, x)) in d.pairs.enumerated() {
                if i > 0 { out += itemSeparator }
                newline(level + 1)
                out += quote(k) + ": "
                try write(x, indent: indent, level: level + 1, into: &out, pos: pos)
            }
            newline(level)
            out += "}"
        case .undefined(let why):
            throw .render(message: "tojson: \(why)", position: pos)
        default:
            throw .render(message: "Object of type \(v.typeName) is not JSON serializable", position: pos)
        }
    }

    static func quote(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        out.append("\"")
        for c in s.unicodeScalars {
            switch c {
            case "\"": out.append(contentsOf: "\\\"".unicodeScalars)
            case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            case "\u{08}": out.append(contentsOf: "\\b".unicodeScalars)
            case "\u{0C}": out.append(contentsOf: "\\f".unicodeScalars)
            default:
                if c.value < 0x20 {
                    let hex = String(c.value, radix: 16)
                    out.append(contentsOf: ("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).unicodeScalars)
                } else {
                    out.append(c)
                }
            }
        }
        out.append("\"")
        return String(out)
    }
}
