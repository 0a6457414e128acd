/// Tokens of a template: raw text and the tokens inside `{{ }}` and `{% %}` tags.
enum TokenKind: Equatable, Sendable {
    case text(String)
    case variableBegin, variableEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case integer(Int)
    case float(Double)
    case op(String)
    case end
}

struct Token: Sendable {
    var kind: TokenKind
    var position: SourcePosition
}

/// Splits template source into tokens, applying Jinja's whitespace control as HuggingFace
/// configures it: `trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline` off, `-`/`+`
/// modifiers on tags, newlines normalized to "\n".
struct Lexer {
    private let s: [Unicode.Scalar]
    private var i = 0
    private var lineStarts: [Int] = [0]
    private var tokens: [Token] = []

    init(_ source: String) {
        // Normalize newlines like Jinja, then drop one trailing newline (keep_trailing_newline=False).
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(source.unicodeScalars.count)
        var it = Array(source.unicodeScalars)[...]
        while let c = it.popFirst() {
            if c == "\r" {
                if it.first == "\n" { it.removeFirst() }
                scalars.append("\n")
            } else {
                scalars.append(c)
            }
        }
        if scalars.last == "\n" { scalars.removeLast() }
        s = scalars
        for (k, c) in s.enumerated() where c == "\n" { lineStarts.append(k + 1) }
    }

    func position(_ index: Int) -> SourcePosition {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= index { lo = mid } else { hi = mid - 1 }
        }
        return SourcePosition(line: lo + 1, column: index - lineStarts[lo] + 1)
    }

    private func error(_ message: String, at index: Int) -> ChatTemplateError {
        .syntax(message: message, position: position(index))
    }

    private func peek(_ k: Int) -> Unicode.Scalar? { k < s.count ? s[k] : nil }

    private static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    private static func string(_ slice: ArraySlice<Unicode.Scalar>) -> String {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: slice)
        return String(v)
    }

    private mutating func emit(_ kind: TokenKind, at index: Int) {
        tokens.append(Token(kind: kind, position: position(index)))
    }

    /// Index of the next tag opener (`{{`, `{%`, `{#`) at or after `from`.
    private func nextTag(from: Int) -> Int? {
        var k = from
        while k + 1 < s.count {
            if s[k] == "{", s[k + 1] == "{" || s[k + 1] == "%" || s[k + 1] == "#" { return k }
            k += 1
        }
        return nil
    }

    mutating func tokenize() throws(ChatTemplateError) -> [Token] {
        var lineStarting = true
        while i < s.count {
            guard let j = nextTag(from: i) else {
                emit(.text(Self.string(s[i...])), at: i)
                i = s.count
                break
            }
            let kind = s[j + 1]
            let sign = peek(j + 2)
            var textEnd = j
            if sign == "-" {
                while textEnd > i && Self.isSpace(s[textEnd - 1]) { textEnd -= 1 }
            } else if kind != "{" && sign != "+" {
                // lstrip_blocks: drop spaces between the line start and a block or comment tag.
                var lineStart = textEnd
                while lineStart > i && s[lineStart - 1] != "\n" { lineStart -= 1 }
                let atLineStart = lineStart > i || lineStarting
                if atLineStart && s[lineStart..<textEnd].allSatisfy({ Self.isSpace($0) && $0 != "\n" }) {
                    textEnd = lineStart
                }
            }
            if textEnd > i { emit(.text(Self.string(s[i..<textEnd])), at: i) }
            var k = j + 2
            if sign == "-" || sign == "+" { k += 1 }
            if kind == "#" {
                k = try skipComment(from: k, openedAt: j)
            } else {
                k = try lexTag(from: k, isBlock: kind == "%", openedAt: j)
            }
            // Whitespace control after the tag: `k` is just past the closing delimiter.
            let closingSign = s[k - 3]
            let isVariable = kind == "{"
            lineStarting = false
            if closingSign == "-" {
                while k < s.count && Self.isSpace(s[k]) { k += 1 }
                lineStarting = k > 0 && s[k - 1] == "\n"
            } else if !isVariable && closingSign != "+" && peek(k) == "\n" {
                k += 1  // trim_blocks
                lineStarting = true
            }
            i = k
            if !isVariable, kind == "%", try handleRaw() { lineStarting = false }
        }
        emit(.end, at: s.count)
        return tokens
    }

    /// Skips a comment body; returns the index after `#}`.
    private func skipComment(from start: Int, openedAt: Int) throws(ChatTemplateError) -> Int {
        var k = start
        while k + 1 < s.count {
            if s[k] == "#" && s[k + 1] == "}" { return k + 2 }
            k += 1
        }
        throw error("unclosed comment (missing '#}')", at: openedAt)
    }

    /// If the block just lexed is `{% raw %}`, replaces it by the verbatim text up to `{% endraw %}`.
    private mutating func handleRaw() throws(ChatTemplateError) -> Bool {
        let n = tokens.count
        guard n >= 3, tokens[n - 3].kind == .blockBegin, tokens[n - 2].kind == .name("raw"),
              tokens[n - 1].kind == .blockEnd else { return false }
        let rawStart = tokens[n - 3].position
        tokens.removeLast(3)
        var k = i
        while let j = nextTag(from: k) {
            var m = j + 2
            var stripBefore = false
            if peek(m) == "-" { stripBefore = true; m += 1 } else if peek(m) == "+" { m += 1 }
            while m < s.count && Self.isSpace(s[m]) { m += 1 }
            let word: [Unicode.Scalar] = Array("endraw".unicodeScalars)
            if s[j + 1] == "%", m + word.count <= s.count, Array(s[m..<(m + word.count)]) == word {
                var e = m + word.count
                while e < s.count && Self.isSpace(s[e]) { e += 1 }
                var stripAfter = false
                if peek(e) == "-" { stripAfter = true; e += 1 } else if peek(e) == "+" { e += 1 }
                guard peek(e) == "%", peek(e + 1) == "}" else { throw error("malformed endraw tag", at: j) }
                var textEnd = j
                if stripBefore { while textEnd > i && Self.isSpace(s[textEnd - 1]) { textEnd -= 1 } }
                if textEnd > i { emit(.text(Self.string(s[i..<textEnd])), at: i) }
                e += 2
                if stripAfter {
                    while e < s.count && Self.isSpace(s[e]) { e += 1 }
                } else if peek(e) == "\n" {
                    e += 1
                }
                i = e
                return true
            }
            k = j + 1
        }
        throw .syntax(message: "unclosed 'raw' block (missing '{% endraw %}')", position: rawStart)
    }

    /// Lexes the inside of `{{ }}` or `{% %}` starting at `start`; returns the index just past
    /// the closing delimiter.
    private mutating func lexTag(from start: Int, isBlock: Bool, openedAt: Int) throws(ChatTemplateError) -> Int {
        emit(isBlock ? .blockBegin : .variableBegin, at: openedAt)
        let closer: Unicode.Scalar = isBlock ? "%" : "}"
        var k = start
        var depth: [Unicode.Scalar] = []
        while true {
            while k < s.count && Self.isSpace(s[k]) { k += 1 }
            guard k < s.count else {
                throw error("unclosed tag '\(isBlock ? "{%" : "{{")' (missing '\(isBlock ? "%}" : "}}")')", at: openedAt)
            }
            let c = s[k]
            if depth.isEmpty {
                // Closing delimiter, possibly with a whitespace-control sign.
                var m = k
                if (c == "-" || c == "+"), peek(k + 1) == closer, peek(k + 2) == "}" { m = k + 1 }
                if s[m] == closer, peek(m + 1) == "}" {
                    emit(isBlock ? .blockEnd : .variableEnd, at: k)
                    return m + 2
                }
                if (s[m] == "%" || s[m] == "}"), peek(m + 1) == "}" {
                    throw error("unexpected '\(s[m])}' inside '\(isBlock ? "{%" : "{{")' tag", at: k)
                }
            }
            if c == "'" || c == "\"" {
                k = try lexString(from: k)
            } else if c.properties.isAlphabetic || c == "_" {
                let b = k
                while k < s.count && (s[k].properties.isAlphabetic || s[k] == "_" || ("0"..."9").contains(s[k])) { k += 1 }
                emit(.name(Self.string(s[b..<k])), at: b)
            } else if ("0"..."9").contains(c) {
                k = try lexNumber(from: k)
            } else {
                let two = k + 1 < s.count ? Self.string(s[k...(k + 1)]) : ""
                if ["//", "**", "==", "!=", "<=", ">="].contains(two) {
                    emit(.op(two), at: k)
                    k += 2
                    continue
                }
                let one = String(Character(c))
                guard "+-*/%~<>=()[]{},.:|".contains(one) else {
                    throw error("unexpected character '\(one)'", at: k)
                }
                switch c {
                case "(", "[", "{": depth.append(c)
                case ")", "]", "}":
                    let expected: Unicode.Scalar = c == ")" ? "(" : (c == "]" ? "[" : "{")
                    guard depth.last == expected else {
                        if let open = depth.last { throw error("unexpected '\(one)': '\(open)' is not closed", at: k) }
                        throw error("unexpected '\(one)' without a matching opening bracket", at: k)
                    }
                    depth.removeLast()
                default: break
                }
                emit(.op(one), at: k)
                k += 1
            }
        }
    }

    private mutating func lexString(from start: Int) throws(ChatTemplateError) -> Int {
        let quote = s[start]
        var k = start + 1
        var out = String.UnicodeScalarView()
        while k < s.count {
            let c = s[k]
            if c == quote {
                emit(.string(String(out)), at: start)
                return k + 1
            }
            if c == "\\", k + 1 < s.count {
                let e = s[k + 1]
                k += 2
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "\\": out.append("\\")
                case "'": out.append("'")
                case "\"": out.append("\"")
                case "0": out.append("\0")
                case "\n": break
                case "x", "u", "U":
                    let len = e == "x" ? 2 : (e == "u" ? 4 : 8)
                    guard k + len <= s.count, let v = UInt32(Self.string(s[k..<(k + len)]), radix: 16),
                          let scalar = Unicode.Scalar(v) else {
                        throw error("invalid \\\(e) escape in string literal", at: k - 2)
                    }
                    out.append(scalar)
                    k += len
                default:
                    out.append("\\")
                    out.append(e)
                }
                continue
            }
            out.append(c)
            k += 1
        }
        throw error("unterminated string literal", at: start)
    }

    private mutating func lexNumber(from start: Int) throws(ChatTemplateError) -> Int {
        var k = start
        var isFloat = false
        func digits() { while k < s.count && (("0"..."9").contains(s[k]) || s[k] == "_") { k += 1 } }
        digits()
        if peek(k) == ".", let d = peek(k + 1), ("0"..."9").contains(d) {
            isFloat = true
            k += 1
            digits()
        }
        if let e = peek(k), e == "e" || e == "E" {
            var m = k + 1
            if let sign = peek(m), sign == "+" || sign == "-" { m += 1 }
            if let d = peek(m), ("0"..."9").contains(d) {
                isFloat = true
                k = m
                digits()
            }
        }
        let text = Self.string(s[start..<k]).filter { $0 != "_" }
        if isFloat {
            guard let v = Double(text) else { throw error("invalid number '\(text)'", at: start) }
            emit(.float(v), at: start)
        } else {
            guard let v = Int(text) else { throw error("integer literal '\(text)' is too large", at: start) }
            emit(.integer(v), at: start)
        }
        return k
    }
}
