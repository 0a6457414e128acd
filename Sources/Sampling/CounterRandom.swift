/// Counter-based random numbers: every value is a pure function of `(seed, position)`.
///
/// Any process that knows a job's seed and the position of the token being sampled reproduces
/// the draw exactly, without replaying earlier draws. The definition (which must never change,
/// or recorded jobs stop being reproducible) is
///
///     mix(z)   = splitmix64 finalizer of z
///     bits     = mix(mix(seed &+ 0x9E3779B97F4A7C15) ^ (UInt64(position) &* 0xD1B54A32D192ED03 &+ 0x632BE59BD9B4E019))
///     uniform  = Double(bits >> 11) * 2^-53            (in [0, 1))
public enum CounterRandom {
    /// The splitmix64 output finalizer (a bijective 64-bit mixer).
    @inlinable
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 64 random bits for `(seed, position)`.
    @inlinable
    public static func bits(seed: UInt64, position: Int) -> UInt64 {
        let key = mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        let counter = UInt64(bitPattern: Int64(position)) &* 0xD1B5_4A32_D192_ED03 &+ 0x632B_E59B_D9B4_E019
        return mix(key ^ counter)
    }

    /// A uniform number in `[0, 1)` with 53 random bits for `(seed, position)`.
    @inlinable
    public static func uniform(seed: UInt64, position: Int) -> Double {
        Double(bits(seed: seed, position: position) >> 11) * 0x1p-53
    }
}
