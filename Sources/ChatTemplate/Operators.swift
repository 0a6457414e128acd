#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

/// Arithmetic and comparison with Python semantics.
enum Operators {
    private static func unsupported(_ op: String, _ a: Value, _ b: Value, _ pos: SourcePosition) -> ChatTemplateError {
        if case .undefined(let why) = a { return .render(message: why, position: pos) }
        if case .undefined(let why) = b { return .render(message: why, position: pos) }
        return .render(message: "unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'", position: pos)
    }

    private static func overflow(_ pos: SourcePosition) -> ChatTemplateError {
        .render(message: "integer overflow", position: pos)
    }

    static func binary(_ op: BinaryOperator, _ a: Value, _ b: Value, pos: SourcePosition) throws(ChatTemplateError) -> Value {
        // Every string and list an operator builds is checked against the render limits before
        // it is built (sizes add and multiply: `s + s` in a loop doubles).
        if op == .concat {
            let (x, y) = (a.text, b.text)
            try RenderLimits.checkString(x.utf8.count + y.utf8.count, pos)
            return .string(x + y)
        }
        switch (op, a, b) {
        case (.add, .string(let x), .string(let y)):
            try RenderLimits.checkString(x.utf8.count + y.utf8.count, pos)
            return .string(x + y)
        case (.add, .array(let x), .array(let y)):
            try RenderLimits.checkList(x.count + y.count, pos)
            return .array(x + y)
        case (.add, .tuple(let x), .tuple(let y)):
            try RenderLimits.checkList(x.count + y.count, pos)
            return .tuple(x + y)
        case (.modulo, .string(let format), _): return .string(try PercentFormat.format(format, b, pos: pos))
        case (.multiply, .string(let s), _) where b.integer != nil:
            let n = try RenderLimits.repetitions(b.integer ?? 0, of: s.utf8.count, limit: RenderLimits.maxBytes, pos)
            return .string(String(repeating: s, count: n))
        case (.multiply, _, .string(let s)) where a.integer != nil:
            let n = try RenderLimits.repetitions(a.integer ?? 0, of: s.utf8.count, limit: RenderLimits.maxBytes, pos)
            return .string(String(repeating: s, count: n))
        case (.multiply, .array(let x), _) where b.integer != nil:
            let n = try RenderLimits.repetitions(b.integer ?? 0, of: x.count, limit: RenderLimits.maxElements, pos)
            return .array(Array(repeatElement(x, count: n).joined()))
        case (.multiply, .tuple(let x), _) where b.integer != nil:
            let n = try RenderLimits.repetitions(b.integer ?? 0, of: x.count, limit: RenderLimits.maxElements, pos)
            return .tuple(Array(repeatElement(x, count: n).joined()))
        default: break
        }
        if let x = a.integer, let y = b.integer {
            switch op {
            case .add:
                let (r, o) = x.addingReportingOverflow(y)
                if o { throw overflow(pos) }
                return .int(r)
            case .subtract:
                let (r, o) = x.subtractingReportingOverflow(y)
                if o { throw overflow(pos) }
                return .int(r)
            case .multiply:
                let (r, o) = x.multipliedReportingOverflow(by: y)
                if o { throw overflow(pos) }
                return .int(r)
            case .divide:
                guard y != 0 else { throw .render(message: "division by zero", position: pos) }
                return .double(Double(x) / Double(y))
            case .floorDivide:
                guard y != 0 else { throw .render(message: "integer division or modulo by zero", position: pos) }
                // Int.min // -1 does not fit.
                guard !x.dividedReportingOverflow(by: y).overflow else { throw overflow(pos) }
                let q = x / y
                return .int((x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q)
            case .modulo:
                guard y != 0 else { throw .render(message: "integer division or modulo by zero", position: pos) }
                // Int.min % -1 traps in Swift; Python's answer is 0.
                guard !x.remainderReportingOverflow(dividingBy: y).overflow else { return .int(0) }
                let r = x % y
                return .int((r != 0 && ((r < 0) != (y < 0))) ? r + y : r)
            case .power:
                if y < 0 { return .double(pow(Double(x), Double(y))) }
                // By squaring: `1 ** (2**62)` must not loop 2^62 times.
                var (result, base, exponent) = (1, x, y)
                while exponent > 0 {
                    if exponent & 1 == 1 {
                        let (r, o) = result.multipliedReportingOverflow(by: base)
                        if o { throw overflow(pos) }
                        result = r
                    }
                    exponent >>= 1
                    if exponent > 0 {
                        let (b2, o) = base.multipliedReportingOverflow(by: base)
                        if o { throw overflow(pos) }
                        base = b2
                    }
                }
                return .int(result)
            case .concat: break
            }
        }
        guard let x = a.number, let y = b.number else { throw unsupported(op.rawValue, a, b, pos) }
        switch op {
        case .add: return .double(x + y)
        case .subtract: return .double(x - y)
        case .multiply: return .double(x * y)
        case .divide:
            guard y != 0 else { throw .render(message: "float division by zero", position: pos) }
            return .double(x / y)
        case .floorDivide:
            guard y != 0 else { throw .render(message: "float floor division by zero", position: pos) }
            return .double((x / y).rounded(.down))
        case .modulo:
            guard y != 0 else { throw .render(message: "float modulo by zero", position: pos) }
            return .double(x - y * (x / y).rounded(.down))
        case .power: return .double(pow(x, y))
        case .concat: return .string(a.text + b.text)
        }
    }

    /// Python ordering: -1, 0, 1; nil when the types cannot be ordered.
    static func order(_ a: Value, _ b: Value) -> Int? {
        switch (a, b) {
        case (.string(let x), .string(let y)):
            if x.unicodeScalars.elementsEqual(y.unicodeScalars) { return 0 }
            return x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : 1
        case (.array(let x), .array(let y)), (.tuple(let x), .tuple(let y)):
            for (p, q) in zip(x, y) where !Value.equal(p, q) { return order(p, q) }
            return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
        default:
            guard let x = a.number, let y = b.number else { return nil }
            return x == y ? 0 : (x < y ? -1 : 1)
        }
    }

    static func compare(_ op: CompareOperator, _ a: Value, _ b: Value, pos: SourcePosition) throws(ChatTemplateError) -> Bool {
        switch op {
        case .equal: return Value.equal(a, b)
        case .notEqual: return !Value.equal(a, b)
        case .contains: return try contains(b, a, pos: pos)
        case .notContains: return !(try contains(b, a, pos: pos))
        default:
            guard let o = order(a, b) else { throw unsupported(op.rawValue, a, b, pos) }
            switch op {
            case .less: return o < 0
            case .lessEqual: return o <= 0
            case .greater: return o > 0
            default: return o >= 0
            }
        }
    }

    /// Python `needle in container`.
    static func contains(_ container: Value, _ needle: Value, pos: SourcePosition) throws(ChatTemplateError) -> Bool {
        switch container {
        case .undefined: return false
        case .string(let s):
            guard case .string(let n) = needle else {
                throw .render(message: "'in <string>' requires string as left operand, not \(needle.typeName)", position: pos)
            }
            return ScalarString.find(Array(n.unicodeScalars), in: Array(s.unicodeScalars)) != nil
        case .array(let a), .tuple(let a): return a.contains { Value.equal($0, needle) }
        case .dict(let d):
            if case .string(let k) = needle { return d[k] != nil }
            return false
        default:
            throw .render(message: "argument of type '\(container.typeName)' is not iterable", position: pos)
        }
    }
}

/// String helpers working on Unicode scalars (Python's code points), not grapheme clusters.
enum ScalarString {
    static func make<C: Sequence>(_ scalars: C) -> String where C.Element == Unicode.Scalar {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: scalars)
        return String(v)
    }

    static func find(_ needle: [Unicode.Scalar], in hay: [Unicode.Scalar], from: Int = 0) -> Int? {
        if needle.isEmpty { return from <= hay.count ? from : nil }
        guard hay.count >= needle.count, from <= hay.count - needle.count else { return nil }
        for i in from...(hay.count - needle.count) where hay[i] == needle[0] {
            if hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
        }
        return nil
    }

    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    /// Python `str.strip/lstrip/rstrip` with optional character set.
    static func strip(_ s: String, chars: String?, leading: Bool, trailing: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        let a = Array(s.unicodeScalars)
        func strippable(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isSpace(c) }
        var lo = 0, hi = a.count
        if leading { while lo < hi && strippable(a[lo]) { lo += 1 } }
        if trailing { while hi > lo && strippable(a[hi - 1]) { hi -= 1 } }
        return make(a[lo..<hi])
    }

    /// Python `str.split(sep, maxsplit)`.
    static func split(_ s: String, separator: String?, maxSplit: Int) -> [String] {
        let a = Array(s.unicodeScalars)
        var parts: [String] = []
        if let separator {
            let sep = Array(separator.unicodeScalars)
            var start = 0
            while maxSplit < 0 || parts.count < maxSplit, let i = find(sep, in: a, from: start) {
                parts.append(make(a[start..<i]))
                start = i + sep.count
            }
            parts.append(make(a[start...]))
            return parts
        }
        var i = 0
        while i < a.count {
            while i < a.count && isSpace(a[i]) { i += 1 }
            guard i < a.count else { break }
            if maxSplit >= 0 && parts.count == maxSplit {
                var end = a.count
                while end > i && isSpace(a[end - 1]) { end -= 1 }
                parts.append(make(a[i..<end]))
                break
            }
            let start = i
            while i < a.count && !isSpace(a[i]) { i += 1 }
            parts.append(make(a[start..<i]))
        }
        return parts
    }

    /// Python `str.replace(old, new, count)`; throws when the result would exceed the render
    /// limit (a long `new` for every character of a long string).
    static func replace(_ s: String, _ old: String, _ new: String, count: Int, pos: SourcePosition) throws(ChatTemplateError) -> String {
        let a = Array(s.unicodeScalars), o = Array(old.unicodeScalars), n = Array(new.unicodeScalars)
        var out: [Unicode.Scalar] = []
        var i = 0
        var done = 0
        func grow(_ more: some Collection<Unicode.Scalar>) throws(ChatTemplateError) {
            try RenderLimits.checkString(out.count + more.count, pos)
            out += more
        }
        if o.isEmpty {
            for c in a {
                if count < 0 || done < count { try grow(n); done += 1 }
                out.append(c)
            }
            if count < 0 || done < count { try grow(n) }
            return make(out)
        }
        while i < a.count {
            if count < 0 || done < count, let j = find(o, in: a, from: i) {
                out += a[i..<j]
                try grow(n)
                i = j + o.count
                done += 1
            } else {
                out += a[i...]
                break
            }
        }
        return make(out)
    }

    static func upper(_ s: String) -> String { s.uppercased() }
    static func lower(_ s: String) -> String { s.lowercased() }

    /// Python `str.capitalize()`.
    static func capitalize(_ s: String) -> String {
        guard let first = s.unicodeScalars.first else { return s }
        return String(first).uppercased() + ScalarString.make(s.unicodeScalars.dropFirst()).lowercased()
    }

    /// Python `str.title()`: a cased letter after an uncased character starts a word.
    static func title(_ s: String) -> String {
        var out = ""
        var previousCased = false
        for c in s.unicodeScalars {
            let cased = c.properties.isCased
            out += previousCased ? String(c).lowercased() : String(c).uppercased()
            previousCased = cased
        }
        return out
    }
}
