/// Parses the header (metadata and tensor index) of a GGUF file that is already in memory.
struct GGUFParser {
    var cursor: ByteCursor
    let path: String

    init(base: UnsafeRawPointer, size: Int, path: String) {
        self.cursor = ByteCursor(base: base, size: size, path: path)
        self.path = path
    }

    struct Header {
        var version: UInt32
        var metadata: [String: GGUFValue]
        var metadataOrder: [String]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian

    mutating func parse() throws(GGUFError) -> Header {
        guard cursor.size >= 4 else { throw .notGGUF(path: path) }
        let magic = try cursor.read(UInt32.self, "magic")
        guard magic == Self.magic else { throw .notGGUF(path: path) }
        let version = try cursor.read(UInt32.self, "version")
        guard version == 2 || version == 3 else { throw .unsupportedVersion(path: path, version: version) }
        let tensorCount = try cursor.read(UInt64.self, "tensor count")
        let kvCount = try cursor.read(UInt64.self, "metadata count")
        // Each entry needs at least a few bytes, so counts beyond the file size are corrupt.
        guard tensorCount <= UInt64(cursor.size), kvCount <= UInt64(cursor.size) else {
            throw .corrupt(path: path, what: "tensor count \(tensorCount) / metadata count \(kvCount) exceed the file size")
        }

        var metadata: [String: GGUFValue] = [:]
        var order: [String] = []
        metadata.reserveCapacity(Int(kvCount))
        for i in 0..<Int(kvCount) {
            let key = try cursor.readString("metadata key #\(i)")
            let type = try cursor.read(UInt32.self, "type of '\(key)'")
            let value = try readValue(type: type, what: key, depth: 0)
            if metadata.updateValue(value, forKey: key) != nil {
                throw .corrupt(path: path, what: "metadata key '\(key)' appears twice")
            }
            order.append(key)
        }

        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard let v = a.intValue, v > 0, v & (v - 1) == 0, v <= 1 << 20 else {
                throw .corrupt(path: path, what: "general.alignment must be a power of two")
            }
            alignment = v
        }

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(Int(tensorCount))
        var seen = Set<String>()
        for i in 0..<Int(tensorCount) {
            let name = try cursor.readString("tensor name #\(i)")
            let nDims = try cursor.read(UInt32.self, "dimension count of '\(name)'")
            guard (1...4).contains(nDims) else {
                throw .corrupt(path: path, what: "tensor '\(name)' has \(nDims) dimensions (1 to 4 allowed)")
            }
            var dims: [Int] = []
            var elements = 1
            for _ in 0..<nDims {
                let d = try cursor.read(UInt64.self, "dimensions of '\(name)'")
                guard d > 0, d < UInt64(Int.max) else {
                    throw .corrupt(path: path, what: "tensor '\(name)' has dimension \(d)")
                }
                let (m, o) = elements.multipliedReportingOverflow(by: Int(d))
                guard !o else { throw .corrupt(path: path, what: "tensor '\(name)' is too large") }
                elements = m
                dims.append(Int(d))
            }
            let rawType = try cursor.read(UInt32.self, "type of '\(name)'")
            let type = GGMLType(rawValue: rawType)
            guard type.isKnown else { throw .unknownTensorType(path: path, tensor: name, type: rawType) }
            guard dims[0] % type.blockElements == 0, let bytes = type.byteCount(elements: elements) else {
                throw .corrupt(path: path, what: "tensor '\(name)' of type \(type) has a row of \(dims[0]) elements, not a whole number of blocks")
            }
            let offset = try cursor.read(UInt64.self, "offset of '\(name)'")
            guard offset % UInt64(alignment) == 0, offset < UInt64(Int.max) else {
                throw .corrupt(path: path, what: "tensor '\(name)' has misaligned offset \(offset)")
            }
            guard seen.insert(name).inserted else {
                throw .corrupt(path: path, what: "tensor '\(name)' appears twice")
            }
            tensors.append(GGUFTensorInfo(name: name, type: type, dimensions: dims,
                                          elementCount: elements, byteCount: bytes, relativeOffset: Int(offset)))
        }

        let headerEnd = cursor.offset
        let dataOffset = (headerEnd + alignment - 1) / alignment * alignment
        return Header(version: version, metadata: metadata, metadataOrder: order, tensors: tensors,
                      alignment: alignment, dataOffset: dataOffset)
    }

    private mutating func readValue(type: UInt32, what: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch type {
        case 0: return .uint8(try cursor.read(UInt8.self, what))
        case 1: return .int8(try cursor.read(Int8.self, what))
        case 2: return .uint16(try cursor.read(UInt16.self, what))
        case 3: return .int16(try cursor.read(Int16.self, what))
        case 4: return .uint32(try cursor.read(UInt32.self, what))
        case 5: return .int32(try cursor.read(Int32.self, what))
        case 6: return .float32(try cursor.readFloat(what))
        case 7:
            let b = try cursor.read(UInt8.self, what)
            guard b <= 1 else { throw .corrupt(path: path, what: "'\(what)' has bool value \(b)") }
            return .bool(b == 1)
        case 8: return .string(try cursor.readString(what))
        case 9: return .array(try readArray(what: what, depth: depth))
        case 10: return .uint64(try cursor.read(UInt64.self, what))
        case 11: return .int64(try cursor.read(Int64.self, what))
        case 12: return .float64(try cursor.readDouble(what))
        default: throw .corrupt(path: path, what: "'\(what)' has unknown value type \(type)")
        }
    }

    private mutating func readArray(what: String, depth: Int) throws(GGUFError) -> GGUFArray {
        guard depth < 4 else { throw .corrupt(path: path, what: "'\(what)' nests arrays too deeply") }
        let elementType = try cursor.read(UInt32.self, "element type of '\(what)'")
        let count64 = try cursor.read(UInt64.self, "length of '\(what)'")
        guard count64 <= UInt64(ByteCursor.maxArrayCount), count64 <= UInt64(cursor.size) else {
            throw .corrupt(path: path, what: "'\(what)' has an absurd length \(count64)")
        }
        let count = Int(count64)
        func ints<T: FixedWidthInteger & SignedInteger>(_ t: T.Type) throws(GGUFError) -> GGUFArray {
            try cursor.require(count * MemoryLayout<T>.size, what)
            var out = [Int64](); out.reserveCapacity(count)
            for _ in 0..<count { out.append(Int64(try cursor.read(T.self, what))) }
            return .integers(out)
        }
        func uints<T: FixedWidthInteger & UnsignedInteger>(_ t: T.Type) throws(GGUFError) -> GGUFArray {
            try cursor.require(count * MemoryLayout<T>.size, what)
            var out = [UInt64](); out.reserveCapacity(count)
            for _ in 0..<count { out.append(UInt64(try cursor.read(T.self, what))) }
            return .unsignedIntegers(out)
        }
        switch elementType {
        case 0: return try uints(UInt8.self)
        case 1: return try ints(Int8.self)
        case 2: return try uints(UInt16.self)
        case 3: return try ints(Int16.self)
        case 4: return try uints(UInt32.self)
        case 5: return try ints(Int32.self)
        case 10: return try uints(UInt64.self)
        case 11: return try ints(Int64.self)
        case 6, 12:
            try cursor.require(count * (elementType == 6 ? 4 : 8), what)
            var out = [Double](); out.reserveCapacity(count)
            for _ in 0..<count {
                out.append(elementType == 6 ? Double(try cursor.readFloat(what)) : try cursor.readDouble(what))
            }
            return .floats(out)
        case 7:
            try cursor.require(count, what)
            var out = [Bool](); out.reserveCapacity(count)
            for _ in 0..<count { out.append(try cursor.read(UInt8.self, what) != 0) }
            return .bools(out)
        case 8:
            var out = [String](); out.reserveCapacity(count)
            for _ in 0..<count { out.append(try cursor.readString(what)) }
            return .strings(out)
        case 9:
            var out = [GGUFArray](); out.reserveCapacity(min(count, 1024))
            for _ in 0..<count { out.append(try readArray(what: what, depth: depth + 1)) }
            return .arrays(out)
        default:
            throw .corrupt(path: path, what: "'\(what)' has unknown element type \(elementType)")
        }
    }
}
