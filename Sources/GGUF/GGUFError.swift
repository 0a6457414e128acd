/// Everything that can be wrong with a model file, each case naming the file and the problem.
public enum GGUFError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The file could not be opened or mapped.
    case cannotOpen(path: String, reason: String)
    /// The file does not start with the GGUF magic.
    case notGGUF(path: String)
    /// The GGUF version is not 2 or 3.
    case unsupportedVersion(path: String, version: UInt32)
    /// The file ends before a structure that should be there.
    case truncated(path: String, what: String, offset: Int)
    /// A structure holds a value that cannot be right (a bad type code, an absurd count or length).
    case corrupt(path: String, what: String)
    /// A tensor has a type this reader does not know.
    case unknownTensorType(path: String, tensor: String, type: UInt32)
    /// A tensor's bytes lie (partly) outside the file's data section.
    case tensorOutOfBounds(path: String, tensor: String)
    /// A required metadata key is missing or has the wrong type.
    case missingMetadata(path: String, key: String)
    /// A required tensor is missing.
    case missingTensor(path: String, tensor: String)
    /// A tensor does not have the shape the model needs.
    case badTensorShape(path: String, tensor: String, expected: [Int], actual: [Int])
    /// The model's architecture is not supported.
    case unsupportedArchitecture(path: String, architecture: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open model file: \(reason)"
        case let .notGGUF(path): return "\(path): not a GGUF file (bad magic)"
        case let .unsupportedVersion(path, v): return "\(path): unsupported GGUF version \(v) (supported: 2, 3)"
        case let .truncated(path, what, offset):
            return "\(path): file is truncated: \(what) at byte \(offset) runs past the end of the file"
        case let .corrupt(path, what): return "\(path): file is corrupt: \(what)"
        case let .unknownTensorType(path, tensor, type):
            return "\(path): tensor '\(tensor)' has unknown or unsupported type \(type)"
        case let .tensorOutOfBounds(path, tensor):
            return "\(path): tensor '\(tensor)' lies outside the file (truncated or corrupt file)"
        case let .missingMetadata(path, key): return "\(path): required metadata '\(key)' is missing or has the wrong type"
        case let .missingTensor(path, tensor): return "\(path): required tensor '\(tensor)' is missing"
        case let .badTensorShape(path, tensor, expected, actual):
            return "\(path): tensor '\(tensor)' has shape \(actual), expected \(expected)"
        case let .unsupportedArchitecture(path, arch):
            return "\(path): unsupported model architecture '\(arch)' (supported: llama)"
        }
    }
}
