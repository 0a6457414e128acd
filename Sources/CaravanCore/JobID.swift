/// The coordinator's name for one job: `job-` and 1 to 64 ASCII letters or digits (the
/// coordinator makes `job-` and 32 hex digits of 128 random bits, so ids cannot be guessed).
///
/// Built only by the checked parser ``init(_:)`` or by ``random(using:)``: anything a peer or a
/// user typed is checked once, where it enters, and the rest of the code holds a valid id.
public struct JobID: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    /// The id as sent on the wire and shown to users.
    public let rawValue: String

    /// The prefix every id starts with.
    public static let prefix = "job-"
    /// Most characters after the prefix.
    public static let maxSuffixLength = 64

    /// Parses `text`; nil unless it is `job-` followed by 1...64 ASCII letters or digits (no
    /// spaces, separators, control characters or non-ASCII look-alikes).
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        let prefix = Array(Self.prefix.utf8)
        guard bytes.count > prefix.count, bytes.count <= prefix.count + Self.maxSuffixLength,
              bytes.starts(with: prefix),
              bytes.dropFirst(prefix.count).allSatisfy(Self.isIDByte) else { return nil }
        rawValue = text
    }

    /// A new id no one can guess: `job-` and 128 bits of `generator` as 32 lowercase hex digits.
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> JobID {
        let hex = (0..<2).map { _ in
            let digits = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }.joined()
        // Always valid: 32 hex digits.
        return JobID(prefix + hex)!
    }

    /// A new id from the system's cryptographic generator.
    public static func random() -> JobID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    public var description: String { rawValue }

    public static func < (a: JobID, b: JobID) -> Bool { a.rawValue < b.rawValue }

    private static func isIDByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z"))
            || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
    }
}
