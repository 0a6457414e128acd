/// Errors raised by the Sampling module.
public enum SamplingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A sampling parameter has an invalid value. `parameter` is the Swift property name
    /// (for example `topP`), `message` says what is wrong and which value was given.
    case invalidParameter(parameter: String, message: String)

    /// The name of the offending parameter.
    public var parameter: String {
        switch self {
        case .invalidParameter(let parameter, _): return parameter
        }
    }

    /// A human-readable description naming the parameter.
    public var description: String {
        switch self {
        case .invalidParameter(let parameter, let message):
            return "invalid sampling parameter '\(parameter)': \(message)"
        }
    }
}
