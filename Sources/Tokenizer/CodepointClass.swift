/// The Unicode classes the pre-tokenizer regexes ask about (`\p{L}`, `\p{N}`, `\p{P}`, `\s`), for one code point.
///
/// Whitespace is llama.cpp's `\s` set (ASCII tab..CR, space, U+0085, U+00A0, U+1680, U+2000-200A,
/// U+2028/9, U+202F, U+205F, U+3000); the rest comes from the general category. Code points assigned
/// after Unicode ``unicodeVersion`` count as unassigned, because llama.cpp's tables stop there.
struct CodepointClass: Equatable {
    /// The Unicode version of llama.cpp's category tables (`unicode-data.cpp`).
    static let unicodeVersion = (major: 15, minor: 1)

    /// General-category group.
    enum Group: UInt8 { case letter, number, punctuation, symbol, mark, separator, control, unassigned }

    let group: Group
    let isWhitespace: Bool

    var isLetter: Bool { group == .letter }
    var isNumber: Bool { group == .number }
    var isPunctuation: Bool { group == .punctuation }

    /// `[^\s\p{L}\p{N}]` for an in-range code point.
    var isOther: Bool { !isWhitespace && group != .letter && group != .number }

    init(_ cp: UInt32) {
        if cp < 128 {
            self = CodepointClass.ascii[Int(cp)]
        } else {
            self.init(computing: cp)
        }
    }

    private init(group: Group, isWhitespace: Bool) {
        self.group = group
        self.isWhitespace = isWhitespace
    }

    private init(computing cp: UInt32) {
        let group: Group
        if let scalar = Unicode.Scalar(cp) {
            let age = scalar.properties.age
            let tooNew = age.map { ($0.major, $0.minor) > CodepointClass.unicodeVersion } ?? false
            switch tooNew ? .unassigned : scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
                group = .letter
            case .decimalNumber, .letterNumber, .otherNumber:
                group = .number
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                 .initialPunctuation, .finalPunctuation, .otherPunctuation:
                group = .punctuation
            case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
                group = .symbol
            case .nonspacingMark, .spacingMark, .enclosingMark:
                group = .mark
            case .spaceSeparator, .lineSeparator, .paragraphSeparator:
                group = .separator
            case .control, .format, .privateUse, .surrogate:
                group = .control
            case .unassigned:
                group = .unassigned
            @unknown default:
                group = .unassigned
            }
        } else {
            group = .control  // surrogate code points never reach here from a Swift String
        }
        self.init(group: group, isWhitespace: CodepointClass.isSpace(cp))
    }

    private static func isSpace(_ cp: UInt32) -> Bool {
        switch cp {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    private static let ascii: [CodepointClass] = (0..<128).map { CodepointClass(computing: UInt32($0)) }
}
