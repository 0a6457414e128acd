import Foundation
import XCTest
@testable import ChatTemplate

/// A JSON value that keeps object key order (fixtures compare `tojson` output, which depends on it).
indirect enum OrderedJSON: Equatable {
    case null, bool(Bool), number(Double, isInteger: Bool), string(String), array([OrderedJSON])
    case object([(String, OrderedJSON)])

    static func == (a: OrderedJSON, b: OrderedJSON) -> Bool { "\(a)" == "\(b)" }

    subscript(key: String) -> OrderedJSON? {
        if case .object(let pairs) = self { return pairs.first { $0.0 == key }?.1 }
        return nil
    }

    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var array: [OrderedJSON] { if case .array(let a) = self { return a } else { return [] } }
    var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }

    var templateValue: TemplateValue {
        switch self {
        case .null: return .none
        case .bool(let b): return .bool(b)
        case .number(let d, let isInteger): return isInteger ? .int(Int(d)) : .double(d)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(\.templateValue))
        case .object(let pairs): return .dictionary(TemplateDictionary(pairs.map { ($0.0, $0.1.templateValue) }))
        }
    }

    var variables: [String: TemplateValue] {
        guard case .object(let pairs) = self else { return [:] }
        var out: [String: TemplateValue] = [:]
        for (k, v) in pairs { out[k] = v.templateValue }
        return out
    }

    static func parse(_ text: String) throws -> OrderedJSON {
        var p = JSONParser(scalars: Array(text.unicodeScalars))
        let v = try p.value()
        p.skipSpace()
        guard p.i == p.scalars.count else { throw JSONParser.Failure(message: "trailing data", offset: p.i) }
        return v
    }
}

private struct JSONParser {
    struct Failure: Error { var message: String; var offset: Int }
    let scalars: [Unicode.Scalar]
    var i = 0

    mutating func skipSpace() { while i < scalars.count, [" ", "\n", "\r", "\t"].contains(scalars[i]) { i += 1 } }

    mutating func expect(_ c: Unicode.Scalar) throws {
        skipSpace()
        guard i < scalars.count, scalars[i] == c else { throw Failure(message: "expected \(c)", offset: i) }
        i += 1
    }

    mutating func literal(_ word: String) -> Bool {
        let w = Array(word.unicodeScalars)
        guard i + w.count <= scalars.count, Array(scalars[i..<(i + w.count)]) == w else { return false }
        i += w.count
        return true
    }

    mutating func value() throws -> OrderedJSON {
        skipSpace()
        guard i < scalars.count else { throw Failure(message: "unexpected end", offset: i) }
        switch scalars[i] {
        case "{":
            i += 1
            var pairs: [(String, OrderedJSON)] = []
            skipSpace()
            if scalars[i] == "}" { i += 1; return .object([]) }
            while true {
                skipSpace()
                let k = try stringLiteral()
                try expect(":")
                pairs.append((k, try value()))
                skipSpace()
                if scalars[i] == "," { i += 1; continue }
                try expect("}")
                return .object(pairs)
            }
        case "[":
            i += 1
            var items: [OrderedJSON] = []
            skipSpace()
            if scalars[i] == "]" { i += 1; return .array([]) }
            while true {
                items.append(try value())
                skipSpace()
                if scalars[i] == "," { i += 1; continue }
                try expect("]")
                return .array(items)
            }
        case "\"": return .string(try stringLiteral())
        default:
            if literal("null") { return .null }
            if literal("true") { return .bool(true) }
            if literal("false") { return .bool(false) }
            let start = i
            while i < scalars.count, "+-0123456789.eE".unicodeScalars.contains(scalars[i]) { i += 1 }
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars[start..<i])
            let text = String(s)
            guard let d = Double(text) else { throw Failure(message: "bad number \(text)", offset: start) }
            return .number(d, isInteger: !text.contains(".") && !text.contains("e") && !text.contains("E"))
        }
    }

    mutating func stringLiteral() throws -> String {
        guard scalars[i] == "\"" else { throw Failure(message: "expected string", offset: i) }
        i += 1
        var out = String.UnicodeScalarView()
        while i < scalars.count {
            let c = scalars[i]
            i += 1
            if c == "\"" { return String(out) }
            if c == "\\" {
                let e = scalars[i]
                i += 1
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "u":
                    var hex = String.UnicodeScalarView()
                    hex.append(contentsOf: scalars[i..<(i + 4)])
                    i += 4
                    var v = UInt32(String(hex), radix: 16) ?? 0
                    if (0xD800..<0xDC00).contains(v), scalars[i] == "\\" {
                        var low = String.UnicodeScalarView()
                        low.append(contentsOf: scalars[(i + 2)..<(i + 6)])
                        i += 6
                        v = 0x10000 + ((v - 0xD800) << 10) + ((UInt32(String(low), radix: 16) ?? 0) - 0xDC00)
                    }
                    out.append(Unicode.Scalar(v) ?? "?")
                default: out.append(e)
                }
            } else {
                out.append(c)
            }
        }
        throw Failure(message: "unterminated string", offset: i)
    }
}

enum Fixtures {
    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures").appendingPathComponent("chat")
    }

    static func load(_ name: String) throws -> OrderedJSON {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try OrderedJSON.parse(String(decoding: data, as: UTF8.self))
    }
}
