/// One chat message as given to a chat template (`{"role": ..., "content": ...}`).
public struct ChatMessage: Sendable, Equatable, Codable {
    /// The speaker: "system", "user", "assistant", ...
    public var role: String
    /// The message text.
    public var content: String

    /// Creates a message.
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// A value passed into a template as an extra variable (for example `tools` or `date_string`).
public enum TemplateValue: Sendable, Equatable {
    /// A string.
    case string(String)
    /// An integer.
    case int(Int)
    /// A floating-point number.
    case double(Double)
    /// A boolean.
    case bool(Bool)
    /// A list.
    case array([TemplateValue])
    /// A mapping with string keys; keeps insertion order (as Python dicts do, e.g. for `tojson`).
    case dictionary(TemplateDictionary)
    /// Python's `None`.
    case none
}

extension TemplateValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    /// A string literal.
    public init(stringLiteral value: String) { self = .string(value) }
    /// An integer literal.
    public init(integerLiteral value: Int) { self = .int(value) }
    /// A float literal.
    public init(floatLiteral value: Double) { self = .double(value) }
    /// A boolean literal.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// An array literal.
    public init(arrayLiteral elements: TemplateValue...) { self = .array(elements) }
    /// A dictionary literal; the literal's order is kept.
    public init(dictionaryLiteral elements: (String, TemplateValue)...) {
        self = .dictionary(TemplateDictionary(elements))
    }
    /// `nil` is `.none`.
    public init(nilLiteral: ()) { self = .none }
}

/// An insertion-ordered dictionary of template values with string keys.
public struct TemplateDictionary: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    /// Keys in insertion order.
    public private(set) var keys: [String] = []
    private var storage: [String: TemplateValue] = [:]

    /// An empty dictionary.
    public init() {}

    /// A dictionary with the given pairs in order; a repeated key keeps its first position and
    /// the last value.
    public init(_ pairs: [(String, TemplateValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    /// Converts a Swift dictionary; keys are sorted, since a Swift dictionary has no order.
    public init(_ dictionary: [String: TemplateValue]) {
        for k in dictionary.keys.sorted() { self[k] = dictionary[k] }
    }

    /// A dictionary literal; the literal's order is kept.
    public init(dictionaryLiteral elements: (String, TemplateValue)...) {
        self.init(elements)
    }

    /// The value for `key`; assigning `nil` removes the key.
    public subscript(key: String) -> TemplateValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// Number of entries.
    public var count: Int { keys.count }

    /// Entries in insertion order.
    public var pairs: [(key: String, value: TemplateValue)] {
        keys.compactMap { k in storage[k].map { (key: k, value: $0) } }
    }

    /// Equal when they have the same keys with equal values (order does not matter, as in Python).
    public static func == (a: TemplateDictionary, b: TemplateDictionary) -> Bool {
        a.storage == b.storage
    }
}
