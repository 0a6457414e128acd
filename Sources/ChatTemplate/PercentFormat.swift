#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

/// Python's printf-style `str % args` (used by `'%s' % x` and the `format` filter).
/// Supports `%s %r %d %i %f %F %e %x %X %o %c %%` with flags `-+ 0#`, width and precision.
enum PercentFormat {
    static func format(_ format: String, _ args: Value, pos: SourcePosition) throws(ChatTemplateError) -> String {
        if case .undefined(let why) = args { throw .render(message: why, position: pos) }
        let values: [Value]
        var isMapping = false
        switch args {
        case .tuple(let t): values = t
        case .array, .dict:
            // Python treats any non-tuple with __getitem__ as a possible mapping: one argument,
            // and unused arguments are not an error.
            values = [args]
            isMapping = true
        default: values = [args]
        }
        let f = Array(format.unicodeScalars)
        var out = ""
        var next = 0
        var i = 0
        func fail(_ m: String) -> ChatTemplateError { .render(message: m, position: pos) }
        while i < f.count {
            let c = f[i]
            guard c == "%" else {
                out.unicodeScalars.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < f.count else { throw fail("incomplete format") }
            if f[i] == "(" { throw fail("format mappings ('%(name)s') are not supported") }
            var flags = Set<Unicode.Scalar>()
            while i < f.count, "-+ 0#".unicodeScalars.contains(f[i]) { flags.insert(f[i]); i += 1 }
            // Widths and precisions pad and cut strings: at most the render limit (and no overflow
            // from a long run of digits).
            func number() throws(ChatTemplateError) -> Int {
                var n = 0
                while i < f.count, let d = Int(String(f[i])) {
                    n = n * 10 + d
                    i += 1
                    guard n <= RenderLimits.maxBytes else { throw fail("format width or precision is too large") }
                }
                return n
            }
            let width = try number()
            var precision: Int?
            if i < f.count, f[i] == "." {
                i += 1
                precision = try number()
            }
            guard i < f.count else { throw fail("incomplete format") }
            let type = f[i]
            i += 1
            if type == "%" {
                out += "%"
                continue
            }
            guard next < values.count else { throw fail("not enough arguments for format string") }
            let v = values[next]
            next += 1
            var body: String
            var numeric = false
            var negative = false
            switch type {
            case "s": body = v.text
            case "r", "a": body = v.repr
            case "d", "i", "u", "x", "X", "o":
                guard let n = v.number else { throw fail("%\(type) format: a real number is required, not \(v.typeName)") }
                guard n.isFinite else { throw fail("cannot convert float \(Value.formatDouble(n)) to integer") }
                let iv = v.integer ?? Int(n.rounded(.towardZero))
                negative = iv < 0
                let radix = type == "x" || type == "X" ? 16 : (type == "o" ? 8 : 10)
                body = String(iv.magnitude, radix: radix, uppercase: type == "X")
                if flags.contains("#") && radix != 10 { body = (radix == 16 ? "0\(type)" : "0o") + body }
                numeric = true
            case "f", "F", "e", "E":
                guard let n = v.number else { throw fail("must be real number, not \(v.typeName)") }
                negative = n < 0 || (n == 0 && n.sign == .minus)
                body = fixed(abs(n), precision: precision ?? 6, exponent: type == "e" || type == "E")
                if type == "E" { body = body.uppercased() }
                numeric = true
            case "c":
                if case .string(let s) = v, s.unicodeScalars.count == 1 { body = s } else if let n = v.integer,
                    let u = Unicode.Scalar(UInt32(clamping: n)) { body = String(u) } else {
                    throw fail("%c requires an int or a single character")
                }
            default:
                throw fail("unsupported format character '\(type)'")
            }
            if let precision, type == "s" || type == "r" {
                body = ScalarString.make(body.unicodeScalars.prefix(precision))
            }
            var sign = ""
            if numeric {
                if negative { sign = "-" } else if flags.contains("+") { sign = "+" } else if flags.contains(" ") { sign = " " }
            }
            let length = sign.unicodeScalars.count + body.unicodeScalars.count
            if width > length {
                let pad = width - length
                if flags.contains("-") {
                    body = sign + body + String(repeating: " ", count: pad)
                } else if numeric && flags.contains("0") {
                    body = sign + String(repeating: "0", count: pad) + body
                } else {
                    body = String(repeating: " ", count: pad) + sign + body
                }
            } else {
                body = sign + body
            }
            try RenderLimits.checkString(out.utf8.count + body.utf8.count, pos)
            out += body
        }
        if next < values.count && !isMapping {
            throw fail("not all arguments converted during string formatting")
        }
        return out
    }

    /// Fixed-point (or exponent) formatting of a non-negative number with `precision` digits.
    static func fixed(_ x: Double, precision: Int, exponent: Bool) -> String {
        if x.isNaN { return "nan" }
        if x.isInfinite { return "inf" }
        var buffer = [CChar](repeating: 0, count: 512)
        let spec = exponent ? "%.\(min(precision, 100))e" : "%.\(min(precision, 100))f"
        let n = withVaList([x]) { vsnprintf(&buffer, buffer.count, spec, $0) }
        return String(decoding: buffer.prefix(max(0, min(Int(n), buffer.count - 1))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
