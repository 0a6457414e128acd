/// A constant in the template source.
enum Literal: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
}

enum BinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/", floorDivide = "//"
    case modulo = "%", power = "**", concat = "~"
}

enum CompareOperator: String, Sendable {
    case equal = "==", notEqual = "!=", less = "<", lessEqual = "<=", greater = ">", greaterEqual = ">="
    case contains = "in", notContains = "not in"
}

/// Positional and keyword arguments of a call, filter or test.
struct Arguments: Sendable {
    var positional: [Expression] = []
    var keyword: [(name: String, value: Expression)] = []
}

/// Expression tree.
indirect enum Expression: Sendable {
    case literal(Literal)
    case name(String, SourcePosition)
    case list([Expression])
    case tuple([Expression])
    case dict([(key: Expression, value: Expression)], SourcePosition)
    case attribute(Expression, String, SourcePosition)
    case item(Expression, Expression, SourcePosition)
    case slice(Expression, start: Expression?, stop: Expression?, step: Expression?, SourcePosition)
    case call(Expression, Arguments, SourcePosition)
    case filter(Expression, name: String, Arguments, SourcePosition)
    case test(Expression, name: String, Arguments, negated: Bool, SourcePosition)
    case negate(Expression, SourcePosition)
    case plus(Expression, SourcePosition)
    case not(Expression)
    case and(Expression, Expression)
    case or(Expression, Expression)
    case binary(BinaryOperator, Expression, Expression, SourcePosition)
    case compare(Expression, [(op: CompareOperator, right: Expression)], SourcePosition)
    case conditional(condition: Expression, then: Expression, otherwise: Expression?)
}

/// Target of `{% set %}`.
enum SetTarget: Sendable {
    case names([String])
    case attribute(object: String, attribute: String)
}

/// Statement tree.
indirect enum Node: Sendable {
    case text(String)
    case output(Expression, SourcePosition)
    case conditional(branches: [(condition: Expression, body: [Node])], otherwise: [Node])
    case forLoop(targets: [String], iterable: Expression, filter: Expression?, body: [Node], otherwise: [Node],
                 SourcePosition)
    case set(SetTarget, Expression, SourcePosition)
    case setBlock(String, body: [Node])
    case breakLoop(SourcePosition)
    case continueLoop(SourcePosition)
    case macro(Macro)
}

/// A `{% macro name(args) %}...{% endmacro %}` definition.
struct Macro: Sendable {
    var name: String
    var parameters: [(name: String, defaultValue: Expression?)]
    var body: [Node]
}
