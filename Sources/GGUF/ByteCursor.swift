/// A bounds-checked little-endian reader over the mapped header of a GGUF file.
struct ByteCursor {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var offset: Int = 0

    /// Caps that keep a corrupt count from allocating the world.
    static let maxStringBytes = 1 << 30
    static let maxArrayCount = 1 << 28

    mutating func require(_ n: Int, _ what: String) throws(GGUFError) {
        guard n >= 0, offset <= size, n <= size - offset else {
            throw .truncated(path: path, what: what, offset: offset)
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String) throws(GGUFError) -> T {
        try require(MemoryLayout<T>.size, what)
        let v = base.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    mutating func readFloat(_ what: String) throws(GGUFError) -> Float {
        Float(bitPattern: try read(UInt32.self, what))
    }

    mutating func readDouble(_ what: String) throws(GGUFError) -> Double {
        Double(bitPattern: try read(UInt64.self, what))
    }

    mutating func readString(_ what: String, v1: Bool = false) throws(GGUFError) -> String {
        let len64: UInt64 = v1 ? UInt64(try read(UInt32.self, what)) : try read(UInt64.self, what)
        guard len64 <= UInt64(Self.maxStringBytes) else {
            throw .corrupt(path: path, what: "\(what) has an absurd length \(len64)")
        }
        let len = Int(len64)
        try require(len, what)
        let buf = UnsafeRawBufferPointer(start: base + offset, count: len)
        offset += len
        // GGUF strings are UTF-8; invalid sequences are repaired rather than trusted.
        return String(decoding: buf, as: UTF8.self)
    }
}
