/// A contiguous, half-open range of transformer layers `[start, end)` owned by one stage.
public struct LayerRange: Hashable, Sendable, Codable, CustomStringConvertible {
    /// First layer (inclusive).
    public let start: Int
    /// One past the last layer.
    public let end: Int

    /// Creates `[start, end)`; returns nil unless `0 <= start < end`.
    public init?(_ start: Int, _ end: Int) {
        guard start >= 0, end > start else { return nil }
        self.start = start
        self.end = end
    }

    /// Number of layers.
    public var count: Int { end - start }
    /// Whether `layer` is in the range.
    public func contains(_ layer: Int) -> Bool { layer >= start && layer < end }
    /// The layers as a Swift range.
    public var layers: Range<Int> { start..<end }

    public var description: String { "[\(start), \(end))" }
}

/// Identifies one sequence (one conversation's token stream) inside a stage's KV cache.
public struct SequenceID: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (a: SequenceID, b: SequenceID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "seq\(rawValue)" }
}
