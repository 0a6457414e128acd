import ZeroMQ

/// Element type of an activation tensor.
public enum TensorDType: Sendable, Equatable, CaseIterable {
    /// IEEE 754 half precision (the default on the wire).
    case f16
    /// IEEE 754 single precision.
    case f32

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f16: 2
        case .f32: 4
        }
    }
}

/// Where a tensor's bytes live, so that they travel without extra copies: a buffer we filled
/// (sent zero-copy) or a received ZeroMQ frame (read in place, forwardable as is).
public enum TensorStorage: Sendable {
    /// A heap buffer owned by this process.
    case buffer(FrameBuffer)
    /// A received frame.
    case frame(Message)

    /// Size in bytes.
    public var count: Int {
        switch self {
        case .buffer(let b): b.count
        case .frame(let m): m.count
        }
    }

    /// Reads the bytes in place.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch self {
        case .buffer(let b): try b.withUnsafeBytes { raw in try body(raw) }
        case .frame(let m): try m.withUnsafeBytes { raw in try body(raw) }
        }
    }

    /// The ZeroMQ frame for sending these bytes without copying them.
    public func message() -> Message {
        switch self {
        case .buffer(let b): Message(zeroCopy: b)
        case .frame(let m): m
        }
    }
}

/// A dense row-major tensor of activations: `shape` is outermost first, e.g. `[rows, hidden]`;
/// elements are little-endian.
public struct ActivationTensor: Sendable {
    /// Element type.
    public let dtype: TensorDType
    /// Dimensions, outermost first; non-empty, all positive.
    public let shape: [Int]
    /// The bytes (exactly `elementCount * dtype.byteSize`).
    public let storage: TensorStorage

    /// Wraps `storage`, checking that the shape is valid and matches its size.
    public init(dtype: TensorDType, shape: [Int], storage: TensorStorage) throws(WireError) {
        let count = try Self.elementCount(of: shape)
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else { throw .invalidShape("\(shape) has too many elements") }
        guard bytes == storage.count else {
            throw .lengthMismatch(declared: UInt64(storage.count), expected: UInt64(bytes))
        }
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
    }

    /// A zero-filled tensor in a fresh buffer (fill it with ``withUnsafeMutableBytes(_:)`` before
    /// sending it).
    public init(zeros dtype: TensorDType, shape: [Int]) throws(WireError) {
        let count = try Self.elementCount(of: shape)
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else { throw .invalidShape("\(shape) has too many elements") }
        try self.init(dtype: dtype, shape: shape, storage: .buffer(FrameBuffer(count: bytes)))
    }

    /// A tensor holding `values` converted to `dtype`.
    public init(values: [Float], shape: [Int], dtype: TensorDType = .f16) throws(WireError) {
        let count = try Self.elementCount(of: shape)
        guard count == values.count else {
            throw .invalidShape("\(shape) holds \(count) elements but \(values.count) values were given")
        }
        let buffer = FrameBuffer(count: count * dtype.byteSize)
        buffer.withUnsafeMutableBytes { raw in
            switch dtype {
            case .f32:
                for (i, v) in values.enumerated() {
                    raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
                }
            case .f16:
                for (i, v) in values.enumerated() {
                    raw.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: i * 2, as: UInt16.self)
                }
            }
        }
        try self.init(dtype: dtype, shape: shape, storage: .buffer(buffer))
    }

    /// Number of elements.
    public var elementCount: Int { shape.reduce(1, *) }

    /// Size in bytes.
    public var byteCount: Int { storage.count }

    /// The elements as `Float` (a copy; F16 is widened).
    public func floats() -> [Float] {
        storage.withUnsafeBytes { raw in
            switch dtype {
            case .f32:
                (0..<elementCount).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            case .f16:
                (0..<elementCount).map { Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
            }
        }
    }

    /// Reads the bytes in place.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes(body)
    }

    /// Writes the bytes in place. Precondition: the storage is a buffer not yet sent.
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        guard case .buffer(let buffer) = storage else {
            preconditionFailure("a received tensor frame is read-only")
        }
        return buffer.withUnsafeMutableBytes { body($0) }
    }

    /// Element count of `shape`, checking it is non-empty, positive and does not overflow.
    static func elementCount(of shape: [Int]) throws(WireError) -> Int {
        guard !shape.isEmpty else { throw .invalidShape("shape is empty") }
        var count = 1
        for (index, dim) in shape.enumerated() {
            guard dim > 0 else { throw .invalidShape("dimension \(index) is \(dim), must be positive") }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw .invalidShape("\(shape) has too many elements") }
            count = product
        }
        return count
    }
}
