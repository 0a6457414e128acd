/// A mutable attribute bag created by `namespace(...)`; shared by reference like in Jinja.
final class Namespace {
    var attributes: OrderedDict
    init(_ attributes: OrderedDict) { self.attributes = attributes }
}

/// A user-defined macro bound at definition time.
final class MacroValue {
    let macro: Macro
    init(_ macro: Macro) { self.macro = macro }
}

/// Insertion-ordered dictionary of runtime values (string keys).
struct OrderedDict {
    private(set) var keys: [String] = []
    private var storage: [String: Value] = [:]

    init() {}

    subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    var count: Int { keys.count }
    var pairs: [(String, Value)] { keys.compactMap { k in storage[k].map { (k, $0) } } }
}

/// A runtime value while rendering. Mirrors the Python objects Jinja works with.
enum Value {
    /// Jinja's `Undefined`; carries the message used when it is misused.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([Value])
    /// A Python tuple (from `(a, b)` literals and `items()`); behaves like a list except for
    /// printing, equality with lists and `%` formatting.
    case tuple([Value])
    case dict(OrderedDict)
    case namespace(Namespace)
    case macro(MacroValue)
    /// A global function such as `raise_exception` or `range`.
    case function(String)

    init(_ v: TemplateValue) {
        switch v {
        case .string(let s): self = .string(s)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .bool(let b): self = .bool(b)
        case .none: self = .none
        case .array(let a): self = .array(a.map(Value.init))
        case .dictionary(let d):
            var o = OrderedDict()
            for (k, v) in d.pairs { o[k] = Value(v) }
            self = .dict(o)
        }
    }

    init(_ literal: Literal) {
        switch literal {
        case .none: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        }
    }

    /// The elements of a list or tuple.
    var elements: [Value]? {
        switch self {
        case .array(let a), .tuple(let a): return a
        default: return nil
        }
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    /// Python type name, used in error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .macro: return "Macro"
        case .function: return "function"
        }
    }

    /// Python truthiness.
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a), .tuple(let a): return !a.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .macro, .function: return true
        }
    }

    /// Numeric view (bools count as ints, as in Python).
    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    var integer: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Python `str(value)`, as Jinja prints it (undefined prints as "").
    var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python `repr(value)`.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return Value.formatDouble(d)
        case .string(let s): return Value.pythonRepr(s)
        case .array(let a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .tuple(let a): return "(" + a.map(\.repr).joined(separator: ", ") + (a.count == 1 ? ",)" : ")")
        case .dict(let d):
            return "{" + d.pairs.map { Value.pythonRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n):
            return "<Namespace " + n.attributes.pairs.map { "\($0.0)=\($0.1.repr)" }.joined(separator: ", ") + ">"
        case .macro(let m): return "<Macro '\(m.macro.name)'>"
        case .function(let f): return "<function \(f)>"
        }
    }

    /// Python's float repr (shortest round-trip, always with a decimal point or exponent).
    static func formatDouble(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        var s = "\(d)"
        if let e = s.firstIndex(of: "e") {
            // Swift: 1e+20, 1e-05 -> Python uses at least two exponent digits.
            let mantissa = s[..<e]
            var exp = String(s[s.index(after: e)...])
            var sign = "+"
            if exp.hasPrefix("-") { sign = "-"; exp.removeFirst() } else if exp.hasPrefix("+") { exp.removeFirst() }
            if exp.count < 2 { exp = "0" + exp }
            var m = String(mantissa)
            if m.hasSuffix(".0") { m.removeLast(2) }
            s = m + "e" + sign + exp
        }
        return s
    }

    /// Python's repr of a string.
    static func pythonRepr(_ s: String) -> String {
        let quote: Unicode.Scalar = (s.contains("'") && !s.contains("\"")) ? "\"" : "'"
        var out = String.UnicodeScalarView()
        out.append(quote)
        for c in s.unicodeScalars {
            switch c {
            case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            default:
                if c == quote {
                    out.append("\\")
                    out.append(c)
                } else if c.value < 0x20 || c.value == 0x7F {
                    let hex = String(c.value, radix: 16)
                    out.append(contentsOf: ("\\x" + (hex.count < 2 ? "0" + hex : hex)).unicodeScalars)
                } else {
                    out.append(c)
                }
            }
        }
        out.append(quote)
        return String(out)
    }

    /// Python `==`.
    static func equal(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case (.array(let x), .array(let y)), (.tuple(let x), .tuple(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && x.pairs.allSatisfy { k, v in y[k].map { equal(v, $0) } ?? false }
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.macro(let x), .macro(let y)): return x === y
        case (.function(let x), .function(let y)): return x == y
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }
}
