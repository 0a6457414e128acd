#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A GGUF model file mapped into memory (not copied): metadata, tensor index and tensor bytes.
///
/// Every offset and size is checked against the file when it is opened, so a truncated or corrupt
/// file gives a ``GGUFError`` naming the file and the problem. Tensor bytes are only touched (paged
/// in) when a caller reads them, so a stage that uses a few layers keeps only those resident.
public final class GGUFFile: @unchecked Sendable {
    /// Path the file was opened from.
    public let path: String
    /// GGUF format version (2 or 3).
    public let version: UInt32
    /// All metadata key/values.
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensor index in file order.
    public let tensorInfos: [GGUFTensorInfo]
    /// Data section alignment.
    public let alignment: Int
    /// Total size of the file in bytes.
    public let fileSize: Int
    /// Offset of the data section from the start of the file.
    public let dataOffset: Int

    private let base: UnsafeRawPointer
    private let tensorsByName: [String: Int]

    /// Opens and validates `path`, mapping it read-only.
    public init(path: String) throws(GGUFError) {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .cannotOpen(path: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        guard size >= 24 else {
            if size >= 4 { throw .truncated(path: path, what: "header", offset: 0) }
            throw .notGGUF(path: path)
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw .cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        let base = UnsafeRawPointer(mapped)
        var parser = GGUFParser(base: base, size: size, path: path)
        let header: GGUFParser.Header
        do {
            header = try parser.parse()
        } catch {
            munmap(mapped, size)
            throw error
        }
        // Every tensor must lie inside the data section.
        var byName: [String: Int] = [:]
        for (i, t) in header.tensors.enumerated() {
            let (start, o1) = header.dataOffset.addingReportingOverflow(t.relativeOffset)
            let (end, o2) = start.addingReportingOverflow(t.byteCount)
            if o1 || o2 || end > size {
                munmap(mapped, size)
                throw .tensorOutOfBounds(path: path, tensor: t.name)
            }
            byName[t.name] = i
        }
        self.base = base
        self.fileSize = size
        self.version = header.version
        self.metadata = header.metadata
        self.metadataKeys = header.metadataOrder
        self.tensorInfos = header.tensors
        self.alignment = header.alignment
        self.dataOffset = header.dataOffset
        self.tensorsByName = byName
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), fileSize)
    }

    // MARK: Tensors

    /// The index entry of tensor `name`, or nil.
    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorsByName[name].map { tensorInfos[$0] }
    }

    /// The index entry of tensor `name`, or ``GGUFError/missingTensor(path:tensor:)``.
    public func requireTensor(_ name: String) throws(GGUFError) -> GGUFTensorInfo {
        guard let t = tensor(named: name) else { throw .missingTensor(path: path, tensor: name) }
        return t
    }

    /// Pointer to a tensor's bytes inside the mapping (valid while this file object lives).
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawPointer {
        base + dataOffset + tensor.relativeOffset
    }

    /// The bytes of a tensor inside the mapping (valid while this file object lives).
    public func bytes(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: data(of: tensor), count: tensor.byteCount)
    }

    /// Raw bytes `[offset, offset + count)` of the file, or nil when out of range.
    public func fileBytes(offset: Int, count: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, count >= 0, offset <= fileSize, count <= fileSize - offset else { return nil }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    /// Asks the kernel to read a tensor's pages ahead of use (a hint; errors are ignored).
    public func prefetch(_ tensor: GGUFTensorInfo) {
        #if os(Linux)
        let page = 4096
        let start = (Int(bitPattern: data(of: tensor)) / page) * page
        let end = Int(bitPattern: data(of: tensor)) + tensor.byteCount
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_WILLNEED)
        #endif
    }

    // MARK: Metadata

    /// `general.architecture`.
    public var architecture: String? { string("general.architecture") }

    /// A string value.
    public func string(_ key: String) -> String? {
        if case let .string(s)? = metadata[key] { return s }
        return nil
    }

    /// An integer value of any integer type.
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }

    /// A floating-point value (integers convert).
    public func float(_ key: String) -> Double? { metadata[key]?.doubleValue }

    /// A boolean value.
    public func bool(_ key: String) -> Bool? {
        if case let .bool(b)? = metadata[key] { return b }
        return nil
    }

    /// An array of strings.
    public func stringArray(_ key: String) -> [String]? {
        if case let .array(.strings(a))? = metadata[key] { return a }
        return nil
    }

    /// An array of integers of any integer element type.
    public func intArray(_ key: String) -> [Int]? {
        switch metadata[key] {
        case let .array(.integers(a))?: return a.map { Int($0) }
        case let .array(.unsignedIntegers(a))?:
            var out = [Int](); out.reserveCapacity(a.count)
            for v in a { guard let i = Int(exactly: v) else { return nil }; out.append(i) }
            return out
        default: return nil
        }
    }

    /// An array of floats.
    public func floatArray(_ key: String) -> [Float]? {
        if case let .array(.floats(a))? = metadata[key] { return a.map { Float($0) } }
        return nil
    }
}
