/// GPT-2's reversible byte <-> printable code point mapping used by byte-level BPE vocabularies.
///
/// Printable Latin-1 bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) map to themselves; the other 68 bytes map,
/// in byte order, to U+0100, U+0101, ...
enum ByteLevel {
    /// Code point for each byte.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// UTF-8 of each byte's code point.
    static let byteToUTF8: [[UInt8]] = byteToScalar.map { Array(String(Character(Unicode.Scalar($0)!)).utf8) }

    /// Byte for a mapped code point, if it is one.
    static func byte(for scalar: UInt32) -> UInt8? {
        if scalar < 256 {
            let b = Int(scalar)
            return byteToScalar[b] == scalar ? UInt8(b) : nil
        }
        return scalarToByte[scalar]
    }

    private static let scalarToByte: [UInt32: UInt8] = {
        var map = [UInt32: UInt8]()
        for (b, s) in byteToScalar.enumerated() where s >= 256 { map[s] = UInt8(b) }
        return map
    }()

    /// Decodes a byte-level token text to the bytes it stands for (llama.cpp's `llama_decode_text`).
    ///
    /// A code point outside the mapping yields `[UNK_BYTE_0x<hex>` + text + `]`, as llama.cpp prints it.
    static func decode(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            if let b = byte(for: scalar.value) {
                out.append(b)
            } else {
                out.append(contentsOf: Array("[UNK_BYTE_0x".utf8))
                for u in String(scalar).utf8 {
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(hex[Int(u >> 4)]); out.append(hex[Int(u & 15)])
                }
                out.append(contentsOf: Array(text.utf8))
                out.append(UInt8(ascii: "]"))
            }
        }
        return out
    }
}
