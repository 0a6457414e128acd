/// An immutable map from byte strings to ids, with lookups on byte slices that allocate nothing.
///
/// Keys compare byte for byte (unlike `String`, which compares by canonical equivalence).
/// When a key is inserted twice the later id wins, as in llama.cpp's `token_to_id`.
struct ByteStringTable: Sendable {
    private var storage: [UInt8] = []
    private var starts: [Int] = []
    private var ids: [Int32] = []
    private var slots: [Int32]
    private let mask: Int

    /// Creates a table able to hold `capacity` keys.
    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = Array(repeating: -1, count: size)
        mask = size - 1
        storage.reserveCapacity(capacity * 8)
        starts.reserveCapacity(capacity + 1)
        starts.append(0)
        ids.reserveCapacity(capacity)
    }

    /// Number of distinct keys.
    var count: Int { ids.count }

    /// Inserts or replaces `key`.
    mutating func insert<C: Collection>(_ key: C, id: Int32) where C.Element == UInt8 {
        let bytes = Array(key)
        let found = bytes.withUnsafeBufferPointer { slot(for: $0) }
        if slots[found.slot] >= 0 {
            ids[Int(slots[found.slot])] = id
            return
        }
        precondition(ids.count * 2 < slots.count, "ByteStringTable over capacity")
        slots[found.slot] = Int32(ids.count)
        storage.append(contentsOf: bytes)
        starts.append(storage.count)
        ids.append(id)
    }

    /// The id stored for `key`, if any.
    func lookup(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let s = slots[slot(for: key).slot]
        return s >= 0 ? ids[Int(s)] : nil
    }

    /// The id stored for the bytes of `key`, if any.
    func lookup(_ key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { lookup($0) } }

    /// The id stored for the UTF-8 of `key`, if any.
    func lookup(_ key: String) -> Int32? {
        var key = key
        return key.withUTF8 { lookup($0) }
    }

    private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h ^ (h >> 29)
    }

    private func slot(for key: UnsafeBufferPointer<UInt8>) -> (slot: Int, hash: UInt64) {
        let h = Self.hash(key)
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s < 0 { return (i, h) }
            let start = starts[Int(s)], end = starts[Int(s) + 1]
            if end - start == key.count {
                let equal = storage.withUnsafeBufferPointer { st in
                    key.count == 0 || memcmpEqual(st.baseAddress! + start, key.baseAddress!, key.count)
                }
                if equal { return (i, h) }
            }
            i = (i + 1) & mask
        }
    }
}

@inline(__always)
private func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}
