/// A metadata value from a GGUF file.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double)
    case bool(Bool)
    case string(String)
    case array(GGUFArray)

    /// The value as an integer, if it is one of the integer types and fits in `Int`.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(exactly: v)
        default: return nil
        }
    }

    /// The value as a floating-point number (floats, or integers converted).
    public var doubleValue: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return intValue.map(Double.init)
        }
    }
}

/// A typed metadata array, kept compact (vocabularies have ~10^5 entries).
public enum GGUFArray: Sendable, Equatable {
    case integers([Int64])
    case unsignedIntegers([UInt64])
    case floats([Double])
    case bools([Bool])
    case strings([String])
    case arrays([GGUFArray])

    /// Number of elements.
    public var count: Int {
        switch self {
        case let .integers(a): return a.count
        case let .unsignedIntegers(a): return a.count
        case let .floats(a): return a.count
        case let .bools(a): return a.count
        case let .strings(a): return a.count
        case let .arrays(a): return a.count
        }
    }
}
