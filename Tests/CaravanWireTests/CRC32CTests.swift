import XCTest
@testable import CaravanWire

final class CRC32CTests: XCTestCase {
    /// Bit-by-bit reference, independent of the table code.
    private func reference(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    func testKnownVectors() {
        // Check values of CRC-32C (RFC 3720 appendix B.4 and the common "123456789" check).
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    }

    func testMatchesBitwiseReferenceAtEveryLengthAndIsIncremental() {
        var state: UInt32 = 99
        let data: [UInt8] = (0..<300).map { _ in
            state = state &* 1_103_515_245 &+ 12345
            return UInt8(truncatingIfNeeded: state >> 16)
        }
        for length in 0...data.count {
            let slice = Array(data.prefix(length))
            XCTAssertEqual(CRC32C.checksum(slice), reference(slice), "length \(length)")
        }
        let split = 123
        let first = data.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[..<split])) }
        let whole = data.withUnsafeBytes { CRC32C.update(first, UnsafeRawBufferPointer(rebasing: $0[split...])) }
        XCTAssertEqual(whole, reference(data))
    }

    /// The hardware path (where the CPU has one) and the tables agree at every length and
    /// alignment, including long buffers and continued checksums.
    func testHardwareAndTablesAgree() {
        var state: UInt64 = 7
        let data: [UInt8] = (0..<(1 << 16) + 77).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        data.withUnsafeBytes { all in
            for offset in 0..<9 {
                for length in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 1000, all.count - offset] {
                    let part = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + length)])
                    XCTAssertEqual(CRC32C.update(0, part), CRC32C.softwareUpdate(0, part), "offset \(offset) length \(length)")
                    XCTAssertEqual(CRC32C.update(0x1234_5678, part), CRC32C.softwareUpdate(0x1234_5678, part))
                }
            }
        }
        XCTAssertEqual(data.withUnsafeBytes { CRC32C.softwareUpdate(0, $0) }, reference(data))
        #if arch(x86_64)
        print("CRC32C.usesHardware = \(CRC32C.usesHardware)")
        #endif
    }
}
