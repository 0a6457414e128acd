/// A heap buffer of `Float`s (or other trivial elements) aligned to 64 bytes, owned by one user.
///
/// Kernels read whole cache lines, and misaligned activations cost up to a third of their speed.
final class AlignedBuffer<Element>: @unchecked Sendable {
    private(set) var pointer: UnsafeMutablePointer<Element>
    private(set) var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        self.pointer = Self.allocate(self.capacity)
    }

    deinit { pointer.deallocate() }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Element> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<Element>.stride, alignment: 64)
        return raw.bindMemory(to: Element.self, capacity: n)
    }

    /// Makes room for at least `n` elements; contents are not kept.
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        pointer.deallocate()
        capacity = n
        pointer = Self.allocate(n)
    }

    /// Raw bytes view.
    var raw: UnsafeMutableRawPointer { UnsafeMutableRawPointer(pointer) }
}
