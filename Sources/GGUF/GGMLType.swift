/// A tensor element type as GGUF stores it (the numbers are ggml's `GGML_TYPE_*`).
public struct GGMLType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let f32 = GGMLType(rawValue: 0)
    public static let f16 = GGMLType(rawValue: 1)
    public static let q4_0 = GGMLType(rawValue: 2)
    public static let q4_1 = GGMLType(rawValue: 3)
    public static let q5_0 = GGMLType(rawValue: 6)
    public static let q5_1 = GGMLType(rawValue: 7)
    public static let q8_0 = GGMLType(rawValue: 8)
    public static let q8_1 = GGMLType(rawValue: 9)
    public static let q2_K = GGMLType(rawValue: 10)
    public static let q3_K = GGMLType(rawValue: 11)
    public static let q4_K = GGMLType(rawValue: 12)
    public static let q5_K = GGMLType(rawValue: 13)
    public static let q6_K = GGMLType(rawValue: 14)
    public static let q8_K = GGMLType(rawValue: 15)
    public static let bf16 = GGMLType(rawValue: 30)

    /// (name, elements per block, bytes per block) of the types Caravan can read.
    private static let layouts: [UInt32: (String, Int, Int)] = [
        0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2),
        2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24),
        8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
        10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    ]

    /// Whether this reader knows the type's block layout.
    public var isKnown: Bool { Self.layouts[rawValue] != nil }
    /// Elements per quantization block (1 for plain float types); 0 when unknown.
    public var blockElements: Int { Self.layouts[rawValue]?.1 ?? 0 }
    /// Bytes per quantization block; 0 when unknown.
    public var blockBytes: Int { Self.layouts[rawValue]?.2 ?? 0 }
    /// The type's name as llama.cpp prints it.
    public var description: String { Self.layouts[rawValue]?.0 ?? "type\(rawValue)" }

    /// Bytes taken by `count` elements, or nil if `count` is not a whole number of blocks
    /// or the type is unknown.
    public func byteCount(elements count: Int) -> Int? {
        guard let (_, be, bb) = Self.layouts[rawValue], count >= 0, count % be == 0 else { return nil }
        let (blocks, _) = (count / be, 0)
        let (bytes, overflow) = blocks.multipliedReportingOverflow(by: bb)
        return overflow ? nil : bytes
    }
}
