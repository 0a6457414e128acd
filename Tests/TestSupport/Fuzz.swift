import Foundation

/// How much a fuzz test runs and from which seed: a short, fixed run in the suite; a long run
/// when `CARAVAN_FUZZ_ITERATIONS` is set (`Scripts/fuzz`), from `CARAVAN_FUZZ_SEED` when given.
/// A failure message names the seed and case, so any case can be run again alone.
public struct FuzzRun: Sendable {
    /// Cases to run.
    public let iterations: Int
    /// The first case's seed; case `i` uses ``seed(ofCase:)``.
    public let seed: UInt64
    /// Whether this is a long run (the environment asked for it).
    public let isLong: Bool
    /// The cases to run: `0..<iterations`, or the one case `CARAVAN_FUZZ_CASE` names (a replay).
    public let cases: Range<Int>

    /// The run for a test whose short run has `short` cases; `salt` keeps the tests' seeds apart.
    public init(short: Int, salt: UInt64) {
        let environment = ProcessInfo.processInfo.environment
        if let text = environment["CARAVAN_FUZZ_ITERATIONS"], let n = Int(text), n > 0 {
            iterations = n
            isLong = true
        } else {
            iterations = short
            isLong = false
        }
        let base = environment["CARAVAN_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0xCA7A_7A17
        seed = base ^ (salt &* 0x9E37_79B9_7F4A_7C15)
        if let only = environment["CARAVAN_FUZZ_CASE"].flatMap({ Int($0) }), only >= 0 {
            cases = only..<only + 1
        } else {
            cases = 0..<iterations
        }
    }

    /// The seed of case `index` (each case can be replayed alone from it).
    public func seed(ofCase index: Int) -> UInt64 { seed &+ UInt64(index) &* 0xD1B5_4A32_D192_ED03 }
}

extension SplitMix {
    /// A number in `0..<n` (`n` > 0).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// True with probability `1 / n`.
    public mutating func oneIn(_ n: Int) -> Bool { below(n) == 0 }

    /// One of `items` (non-empty).
    public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    /// An integer that is often a boundary (0, 1, powers of two and their neighbours, the type's
    /// extremes) and otherwise random: what breaks arithmetic on sizes and counts.
    public mutating func hostileUInt64() -> UInt64 {
        switch below(6) {
        case 0: return pick([0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                             0x1_0000_0000, UInt64(Int64.max), UInt64(Int64.max) + 1, .max])
        case 1: let shift = UInt64(below(64)); return (1 << shift) &+ UInt64(bitPattern: Int64(below(3)) - 1)
        case 2: return UInt64(below(1 << 16))
        case 3: return UInt64(bitPattern: -Int64(below(1 << 16)))
        default: return next()
        }
    }

    /// A float that is often hostile: NaN (quiet, signalling, negative), infinities, denormals,
    /// signed zero, the extremes, or a random bit pattern.
    public mutating func hostileFloat() -> Float {
        switch below(4) {
        case 0: return pick([Float.nan, -Float.nan, Float(bitPattern: 0x7F80_0001), .infinity, -.infinity,
                             .leastNonzeroMagnitude, -.leastNonzeroMagnitude, Float(bitPattern: 0x007F_FFFF),
                             -0.0, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 65504, 1e-40])
        case 1: return Float(bitPattern: UInt32(truncatingIfNeeded: next()))
        default: return Float(Int(below(2001)) - 1000) / 100
        }
    }

    /// A double that is often hostile (as ``hostileFloat()``, plus 2^63 and 1e308).
    public mutating func hostileDouble() -> Double {
        switch below(4) {
        case 0: return pick([Double.nan, -.nan, .infinity, -.infinity, .leastNonzeroMagnitude, -0.0,
                             .greatestFiniteMagnitude, 1e308, -1e308, 9.223372036854775807e18, 1.8446744073709552e19, -1, 1e9])
        case 1: return Double(bitPattern: next())
        default: return Double(Int(below(2001)) - 1000) / 100
        }
    }
}

/// Structure-blind mutations of a byte string: bit flips, interesting bytes, insertions,
/// deletions, duplicated chunks, truncation and splices. Deterministic for a given generator.
public enum ByteMutator {
    /// `input` with 1 to 4 random mutations.
    public static func mutate(_ input: [UInt8], _ rng: inout SplitMix, splice other: [UInt8]? = nil) -> [UInt8] {
        var b = input
        for _ in 0...rng.below(4) { mutateOnce(&b, &rng, splice: other) }
        return b
    }

    static func mutateOnce(_ b: inout [UInt8], _ rng: inout SplitMix, splice other: [UInt8]?) {
        if b.isEmpty { b = [UInt8(truncatingIfNeeded: rng.next())]; return }
        let at = rng.below(b.count)
        switch rng.below(9) {
        case 0: b[at] ^= 1 << UInt8(rng.below(8))
        case 1: b[at] = rng.pick([0, 1, 0x7F, 0x80, 0xFF, 0xFE, 0x20, 0x0A, 0x22, 0x5C, 0x7B, 0xC0, 0xED])
        case 2: b[at] = UInt8(truncatingIfNeeded: rng.next())
        case 3: b.insert(contentsOf: (0..<1 + rng.below(8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
        case 4: b.removeSubrange(at..<min(b.count, at + 1 + rng.below(16)))
        case 5:
            let end = min(b.count, at + 1 + rng.below(32))
            let chunk = Array(b[at..<end])
            for _ in 0..<1 + rng.below(8) { b.insert(contentsOf: chunk, at: at) }
        case 6: b = Array(b.prefix(at))
        case 7:
            // Overwrite 4 or 8 bytes with a hostile little-endian integer (a length or count).
            let v = rng.hostileUInt64()
            let width = rng.oneIn(2) ? 4 : 8
            for k in 0..<width where at + k < b.count { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        default:
            if let other, !other.isEmpty {
                let from = rng.below(other.count)
                b = Array(b.prefix(at)) + other[from...]
            } else {
                b.swapAt(at, rng.below(b.count))
            }
        }
    }
}

/// Mutations that know the protobuf wire format (and nothing about the schema): a message is
/// read as a list of fields (number, wire type, value), nested messages are recognised where a
/// length-delimited value parses as one, and a mutation changes field numbers and wire types,
/// writes huge lengths and over-long varints, blows up repeated fields, drops and duplicates
/// fields, or mutates inside a nested message. What the decoder sees is then well-formed enough
/// to get past the parser much of the time and reach the checks behind it.
public enum ProtobufMutator {
    /// A decoded field.
    public struct Field: Equatable, Sendable {
        public var number: UInt64
        public var wireType: UInt8
        /// Varint value, or the raw bytes of fixed32/fixed64/length-delimited values.
        public var varint: UInt64
        public var bytes: [UInt8]
    }

    /// The fields of `bytes`, or nil when it is not a well-formed message.
    public static func parse(_ bytes: [UInt8]) -> [Field]? {
        var i = 0
        var fields: [Field] = []
        func varint() -> UInt64? {
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count, shift < 64 {
                let byte = bytes[i]
                i += 1
                v |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while i < bytes.count {
            guard let key = varint(), key >> 3 > 0 else { return nil }
            let type = UInt8(key & 7)
            switch type {
            case 0:
                guard let v = varint() else { return nil }
                fields.append(Field(number: key >> 3, wireType: 0, varint: v, bytes: []))
            case 1, 5:
                let n = type == 1 ? 8 : 4
                guard i + n <= bytes.count else { return nil }
                fields.append(Field(number: key >> 3, wireType: type, varint: 0, bytes: Array(bytes[i..<i + n])))
                i += n
            case 2:
                guard let len = varint(), len <= UInt64(bytes.count - i) else { return nil }
                fields.append(Field(number: key >> 3, wireType: 2, varint: 0, bytes: Array(bytes[i..<i + Int(len)])))
                i += Int(len)
            default:
                return nil
            }
        }
        return fields
    }

    /// The bytes of `fields`.
    public static func serialize(_ fields: [Field]) -> [UInt8] {
        var out: [UInt8] = []
        for f in fields {
            appendVarint(&out, (f.number << 3) | UInt64(f.wireType & 7))
            switch f.wireType {
            case 0: appendVarint(&out, f.varint)
            case 2:
                appendVarint(&out, UInt64(f.bytes.count))
                out += f.bytes
            default: out += f.bytes
            }
        }
        return out
    }

    /// Appends `v` as a varint.
    public static func appendVarint(_ out: inout [UInt8], _ v: UInt64) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// The largest message a mutation returns (a little over the 1 MiB header limit, so that
    /// oversized frames are tried too, without the fuzzer itself running out of memory).
    public static let maxBytes = 3 << 19

    /// `message` with 1 to 3 structure-aware mutations (byte-level ones when it does not parse),
    /// at most ``maxBytes`` long.
    public static func mutate(_ message: [UInt8], _ rng: inout SplitMix, depth: Int = 0) -> [UInt8] {
        guard var fields = parse(message) else { return Array(ByteMutator.mutate(message, &rng).prefix(maxBytes)) }
        for _ in 0...rng.below(3) {
            if let raw = mutateOnce(&fields, &rng, depth: depth) { return Array(raw.prefix(maxBytes)) }
        }
        return Array(serialize(fields).prefix(maxBytes))
    }

    /// One mutation; returns finished bytes when the mutation had to write raw bytes.
    private static func mutateOnce(_ fields: inout [Field], _ rng: inout SplitMix, depth: Int) -> [UInt8]? {
        if fields.isEmpty {
            fields.append(Field(number: UInt64(1 + rng.below(40)), wireType: 0, varint: rng.hostileUInt64(), bytes: []))
            return nil
        }
        let at = rng.below(fields.count)
        switch rng.below(12) {
        case 0:  // another field number (a known one of another type, or an unknown one)
            fields[at].number = rng.oneIn(3) ? UInt64(1 + rng.below(1 << 20)) : UInt64(1 + rng.below(40))
        case 1:  // another wire type with a plausible value
            let type = rng.pick([0, 1, 2, 5] as [UInt8])
            fields[at].wireType = type
            fields[at].bytes = type == 1 ? (0..<8).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                : type == 5 ? (0..<4).map { _ in UInt8(truncatingIfNeeded: rng.next()) } : fields[at].bytes
            fields[at].varint = rng.hostileUInt64()
        case 2:  // a hostile number
            switch fields[at].wireType {
            case 0: fields[at].varint = rng.hostileUInt64()
            case 5: fields[at].bytes = withUnsafeBytes(of: rng.hostileFloat().bitPattern.littleEndian, Array.init)
            case 1: fields[at].bytes = withUnsafeBytes(of: rng.hostileDouble().bitPattern.littleEndian, Array.init)
            default: fields[at].bytes = ByteMutator.mutate(fields[at].bytes, &rng)
            }
        case 3:  // mutate inside a nested message (or the bytes of a string)
            guard fields[at].wireType == 2 else { return nil }
            fields[at].bytes = depth < 4 ? mutate(fields[at].bytes, &rng, depth: depth + 1) : ByteMutator.mutate(fields[at].bytes, &rng)
        case 4:  // a repeated field blown up
            let copies = min(rng.pick([2, 16, 1000, 20_000]), maxBytes / max(1, fields[at].bytes.count + 2))
            fields.insert(contentsOf: repeatElement(fields[at], count: copies), at: at)
        case 5:
            fields.remove(at: at)
        case 6:  // a length that runs past the end (written raw: serialize would fix it)
            var out = serialize(Array(fields[..<at]))
            appendVarint(&out, (fields[at].number << 3) | 2)
            appendVarint(&out, rng.pick([UInt64(fields[at].bytes.count + 1), 1 << 31, UInt64(Int64.max), .max]))
            return out + fields[at].bytes
        case 7:  // an over-long varint (more than 10 bytes, or ten bytes overflowing 64 bits)
            var out = serialize(Array(fields[..<at]))
            appendVarint(&out, (fields[at].number << 3))
            out += rng.oneIn(2) ? [UInt8](repeating: 0xFF, count: 11) + [0x01] : [UInt8](repeating: 0xFF, count: 9) + [0x7F]
            return out + serialize(Array(fields[(at + 1)...]))
        case 8:  // an empty or huge string
            guard fields[at].wireType == 2 else { return nil }
            fields[at].bytes = rng.oneIn(2) ? [] : [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: rng.pick([300, 70_000, 600_000]))
        case 9:  // invalid UTF-8 in a string
            guard fields[at].wireType == 2 else { return nil }
            fields[at].bytes += rng.pick([[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]])
        case 10:  // a field duplicated (last one wins for scalars, merged for messages)
            fields.append(fields[at])
        default:
            return ByteMutator.mutate(serialize(fields), &rng)
        }
        return nil
    }
}

/// A process's resident memory, from `/proc/PID/status` (`VmRSS`), in bytes; nil when unreadable.
public func residentBytes(pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
    let fields = line.split(separator: " ", omittingEmptySubsequences: true)
    guard fields.count >= 2, let kib = Int(fields[1]) else { return nil }
    return kib * 1024
}
