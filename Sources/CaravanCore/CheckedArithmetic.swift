/// Overflow-checked arithmetic for sizes built from numbers a peer or a user chose (context
/// length × sequences × bytes per token, sums of layer sizes): nil instead of a trap.
///
/// Swift traps on integer overflow, so a size multiplied from untrusted factors takes a daemon
/// down. Code that multiplies or adds such sizes uses these and turns nil into a typed error.
public enum CheckedArithmetic {
    /// The product of `factors`, or nil when it does not fit in a `UInt64`.
    public static func product(_ factors: UInt64...) -> UInt64? { product(factors) }

    /// The product of `factors`, or nil when it does not fit in a `UInt64` (1 for none).
    public static func product(_ factors: some Sequence<UInt64>) -> UInt64? {
        var result: UInt64 = 1
        for f in factors {
            let (p, overflow) = result.multipliedReportingOverflow(by: f)
            if overflow { return nil }
            result = p
        }
        return result
    }

    /// The sum of `terms`, or nil when it does not fit in a `UInt64`.
    public static func sum(_ terms: UInt64...) -> UInt64? { sum(terms) }

    /// The sum of `terms`, or nil when it does not fit in a `UInt64` (0 for none).
    public static func sum(_ terms: some Sequence<UInt64>) -> UInt64? {
        var result: UInt64 = 0
        for t in terms {
            let (s, overflow) = result.addingReportingOverflow(t)
            if overflow { return nil }
            result = s
        }
        return result
    }

    /// `value` as a `UInt64` when it is a non-negative `Int`, else nil.
    public static func unsigned(_ value: Int) -> UInt64? { value >= 0 ? UInt64(value) : nil }

    /// `value` rounded down as an `Int` when it is finite and in range, else nil (`Int(_:)` traps on
    /// NaN, infinities and out-of-range values).
    public static func int(_ value: Double) -> Int? { Int(exactly: value.rounded(.down)) }
}
