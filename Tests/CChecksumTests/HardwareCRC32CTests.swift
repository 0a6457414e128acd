import CChecksum
import XCTest

/// The CPU's CRC-32C instruction path (the table path is Swift, in `CaravanWire`, and is tested
/// there against this one).
final class HardwareCRC32CTests: XCTestCase {
    /// Bit-by-bit CRC-32C (reflected polynomial 0x82F63B78), independent of any table or instruction.
    private func reference(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    /// The full checksum through the hardware step (inverted before and after, as the header says).
    private func hardware(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        ~cchecksum_crc32c_hw_update(~crc, bytes.baseAddress, bytes.count)
    }

    private func requireHardware() throws {
        #if arch(x86_64)
        // Every x86-64 CPU this project runs on has SSE4.2: here the tests must not skip.
        XCTAssertEqual(cchecksum_crc32c_hw_available(), 1, "this CPU is expected to have a CRC-32C instruction")
        #endif
        if cchecksum_crc32c_hw_available() == 0 { throw XCTSkip("no CRC-32C instruction on this CPU") }
    }

    func testKnownVectors() throws {
        try requireHardware()
        // The "123456789" check value and RFC 3720 (iSCSI) appendix B.4.
        let vectors: [([UInt8], UInt32)] = [
            (Array("123456789".utf8), 0xE306_9283),
            ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
            ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
            ((0..<32).map { UInt8($0) }, 0x46DD_794E),
            ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
            ([], 0),
        ]
        for (bytes, expected) in vectors {
            XCTAssertEqual(bytes.withUnsafeBytes { hardware($0) }, expected, "\(bytes.prefix(4))… (\(bytes.count) bytes)")
        }
    }

    /// Every length from 0 to 100 at every alignment of the 8-byte steps, against the bit-by-bit
    /// reference; and a checksum continued over two pieces equals one over the whole.
    func testMatchesTheBitwiseReferenceAtEveryLengthAndAlignment() throws {
        try requireHardware()
        var state: UInt32 = 12_345
        let data: [UInt8] = (0..<120).map { _ in
            state = state &* 1_103_515_245 &+ 12_345
            return UInt8(truncatingIfNeeded: state >> 16)
        }
        data.withUnsafeBytes { all in
            for offset in 0..<8 {
                for length in 0...100 {
                    let piece = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + length)])
                    XCTAssertEqual(hardware(piece), reference(piece), "offset \(offset), length \(length)")
                }
            }
            for split in [0, 1, 7, 8, 9, 64, 119, 120] {
                let first = hardware(UnsafeRawBufferPointer(rebasing: all[..<split]))
                let whole = hardware(UnsafeRawBufferPointer(rebasing: all[split...]), continuing: first)
                XCTAssertEqual(whole, reference(data), "split at \(split)")
            }
        }
    }
}
