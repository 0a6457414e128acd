import ZeroMQ

extension TensorDType {
    /// The wire enum value.
    public var wire: Caravan_V1_DType {
        switch self {
        case .f16: .f16
        case .f32: .f32
        }
    }

    /// The domain dtype for a wire value; unspecified and unknown values are rejected.
    public init(wire: Caravan_V1_DType) throws(WireError) {
        switch wire {
        case .f16: self = .f16
        case .f32: self = .f32
        case .unspecified: throw .unknownDType(0)
        case .UNRECOGNIZED(let raw): throw .unknownDType(raw)
        }
    }
}

extension ActivationTensor {
    /// The header describing this tensor, with the CRC-32C of its bytes.
    public func wireHeader() -> Caravan_V1_TensorHeader {
        var header = Caravan_V1_TensorHeader()
        header.dtype = dtype.wire
        header.shape = shape.map { UInt64($0) }
        header.byteLength = UInt64(byteCount)
        header.crc32C = storage.withUnsafeBytes { CRC32C.checksum($0) }
        return header
    }

    /// Validates `header` against the received `payload` frame and wraps the frame without copying:
    /// known dtype; shape non-empty, within `limits.maxRank`, every dimension positive; element
    /// count * dtype size == `byte_length` == payload size; size within `limits.maxPayloadBytes`;
    /// CRC-32C matches.
    public init(wire header: Caravan_V1_TensorHeader, payload: Message, limits: WireLimits) throws(WireError) {
        let dtype = try TensorDType(wire: header.dtype)
        guard !header.shape.isEmpty else { throw .invalidShape("shape is empty") }
        guard header.shape.count <= limits.maxRank else {
            throw .invalidShape("\(header.shape.count) dimensions exceed the limit of \(limits.maxRank)")
        }
        var shape: [Int] = []
        var elements: UInt64 = 1
        for (index, dim) in header.shape.enumerated() {
            guard dim > 0 else { throw .invalidShape("dimension \(index) is 0, must be positive") }
            guard dim <= UInt64(Int.max) else { throw .invalidShape("dimension \(index) is too large") }
            let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw .invalidShape("\(header.shape) has too many elements") }
            elements = product
            shape.append(Int(dim))
        }
        let (expected, overflow) = elements.multipliedReportingOverflow(by: UInt64(dtype.byteSize))
        guard !overflow else { throw .invalidShape("\(header.shape) has too many elements") }
        guard header.byteLength == expected else {
            throw .lengthMismatch(declared: header.byteLength, expected: expected)
        }
        guard header.byteLength <= UInt64(limits.maxPayloadBytes) else {
            throw .payloadTooLarge(bytes: header.byteLength, limit: limits.maxPayloadBytes)
        }
        guard UInt64(payload.count) == header.byteLength else {
            throw .payloadSizeMismatch(declared: header.byteLength, actual: payload.count)
        }
        let actual = payload.withUnsafeBytes { CRC32C.checksum($0) }
        guard actual == header.crc32C else { throw .checksumMismatch(declared: header.crc32C, actual: actual) }
        try self.init(dtype: dtype, shape: shape, storage: .frame(payload))
    }
}
