import CChecksum

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the CPU's instruction where it has one
/// (x86-64 SSE4.2, AArch64 CRC), else table-driven with slicing-by-8.
///
/// Used for tensor payload and model chunk checksums. `CRC32C.checksum("123456789".utf8)` is
/// `0xE3069283`.
public enum CRC32C {
    /// True when checksums are computed by the CPU's CRC-32C instruction.
    public static let usesHardware = cchecksum_crc32c_hw_available() != 0

    /// Reflected Castagnoli polynomial.
    public static let polynomial: UInt32 = 0x82F6_3B78

    /// 8 tables of 256 entries: table k gives the CRC contribution of a byte k positions back.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var crc = UInt32(i)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ polynomial : crc >> 1 }
            t[i] = crc
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let previous = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (previous >> 8) ^ t[Int(previous & 0xFF)]
            }
        }
        return t
    }()

    /// The CRC-32C of `bytes`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        update(0, bytes)
    }

    /// The CRC-32C of `bytes`.
    public static func checksum<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        let array = Array(bytes)
        return array.withUnsafeBytes { update(0, $0) }
    }

    /// Continues a checksum: `update(checksum(a), b) == checksum(a + b)`.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard usesHardware else { return softwareUpdate(crc, bytes) }
        guard bytes.count > 0, let base = bytes.baseAddress else { return crc }
        return ~cchecksum_crc32c_hw_update(~crc, base, bytes.count)
    }

    /// ``update(_:_:)`` with the tables only (the fallback; tests compare the two).
    static func softwareUpdate(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        let count = bytes.count
        guard count > 0, let base = bytes.baseAddress else { return crc }
        tables.withUnsafeBufferPointer { t in
            var i = 0
            while count - i >= 8 {
                let lo = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ c
                let hi = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < count {
                let byte = base.load(fromByteOffset: i, as: UInt8.self)
                c = (c >> 8) ^ t[Int((c ^ UInt32(byte)) & 0xFF)]
                i += 1
            }
        }
        return ~c
    }
}
