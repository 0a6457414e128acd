import ClusterSupport

/// The deadline of one pipeline step, from how long recent steps took.
///
/// A step's message can be lost with a connection that broke (packet loss, a link cut and
/// healed: ZeroMQ does not resend across connections), and the workers stay alive, so only the
/// step's deadline notices. A fixed deadline must cover the longest prefill and so makes every
/// lost decode step cost that long. Instead each step gets `factor` times the time predicted for
/// its rows from the recent steps (their mean time per step, scaled by the row count when the
/// step has more rows than they had), at least `minimum` and at most `maximum` (the configured
/// `--step-timeout`, which also applies before any step has finished).
public struct StepDeadline: Sendable, Equatable {
    /// Multiple of the predicted time.
    public var factor: Double
    /// Shortest deadline, seconds.
    public var minimum: Double
    /// Longest deadline (and the deadline before any measurement), seconds.
    public var maximum: Double
    /// Moving average of step times, seconds (nil = no step yet).
    public private(set) var meanSeconds: Double?
    /// Moving average of rows per step.
    public private(set) var meanRows: Double = 1
    /// Weight of the newest step in the averages.
    public static let weight = 0.2

    /// A policy (`maximum` is the configured step timeout).
    public init(factor: Double = 8, minimum: Double = 2, maximum: Double) {
        self.factor = factor
        self.minimum = min(minimum, maximum)
        self.maximum = maximum
    }

    /// The deadline for a step of `rows` rows, seconds.
    public func seconds(rows: Int) -> Double {
        guard let mean = meanSeconds else { return maximum }
        let predicted = mean * max(1, Double(max(1, rows)) / max(1, meanRows))
        return min(maximum, max(minimum, factor * predicted))
    }

    /// A step of `rows` rows took `seconds`.
    public mutating func record(rows: Int, seconds: Double) {
        guard seconds.isFinite, seconds >= 0 else { return }
        let r = Double(max(1, rows))
        if let mean = meanSeconds {
            meanSeconds = mean + Self.weight * (seconds - mean)
            meanRows += Self.weight * (r - meanRows)
        } else {
            meanSeconds = seconds
            meanRows = r
        }
    }
}
