/// A position in a template's source (1-based line and column, counted in Unicode scalars).
public struct SourcePosition: Sendable, Equatable, CustomStringConvertible {
    /// 1-based line number.
    public var line: Int
    /// 1-based column number.
    public var column: Int

    /// Creates a position.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// "line L, column C".
    public var description: String { "line \(line), column \(column)" }
}

/// Errors from parsing or rendering a chat template.
public enum ChatTemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The template text is malformed (unclosed tag, unknown filter, bad expression, ...).
    case syntax(message: String, position: SourcePosition)
    /// Rendering failed (type error, undefined value used, unsupported operation, ...).
    case render(message: String, position: SourcePosition?)
    /// The template called `raise_exception(message)`.
    case raised(message: String)

    /// The message without position.
    public var message: String {
        switch self {
        case .syntax(let m, _), .render(let m, _), .raised(let m): return m
        }
    }

    /// A readable description including the position when known.
    public var description: String {
        switch self {
        case .syntax(let m, let p): return "chat template syntax error at \(p): \(m)"
        case .render(let m, let p?): return "chat template error at \(p): \(m)"
        case .render(let m, nil): return "chat template error: \(m)"
        case .raised(let m): return "chat template raised an exception: \(m)"
        }
    }
}
