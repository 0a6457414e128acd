import ClusterSupport

/// The deadline of one pipeline step, from how long recent steps took.
///
/// A step's message can be lost with a connection that broke (packet loss, a link cut and
/// healed: ZeroMQ does not resend across connections), and the workers stay alive, so only the
/// step's deadline notices. A fixed deadline must cover the longest prefill and so makes every
/// lost decode step cost that long. Instead each step gets `factor` times the time predicted for
/// its rows, at least `minimum` and at most `maximum` (the configured `--step-timeout`, which also
/// applies before anything was measured). Small steps (decode) are predicted by the moving
/// average of small steps; big ones (prefill, replays) by the average time per row of big steps,
/// or, before a big step was measured, by scaling the small steps' time with the row count.
public struct StepDeadline: Sendable, Equatable {
    /// Multiple of the predicted time.
    public var factor: Double
    /// Shortest deadline, seconds.
    public var minimum: Double
    /// Longest deadline (and the deadline before any measurement), seconds.
    public var maximum: Double
    /// Moving average of the time of small steps, seconds (nil = none yet).
    public private(set) var smallSeconds: Double?
    /// Moving average of their rows.
    public private(set) var smallRows: Double = 1
    /// Moving average of the time per row of big steps, seconds (nil = none yet).
    public private(set) var bigSecondsPerRow: Double?
    /// Steps of at most this many rows are small.
    public static let smallStepRows = 16
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
        let n = Double(max(1, rows))
        let predicted: Double
        if rows <= Self.smallStepRows {
            guard let small = smallSeconds ?? bigSecondsPerRow.map({ $0 * n }) else { return maximum }
            predicted = small
        } else if let perRow = bigSecondsPerRow {
            predicted = max(perRow * n, smallSeconds ?? 0)
        } else if let small = smallSeconds {
            predicted = small * n / max(1, smallRows)
        } else {
            return maximum
        }
        return min(maximum, max(minimum, factor * predicted))
    }

    /// A step of `rows` rows took `seconds`.
    public mutating func record(rows: Int, seconds: Double) {
        guard seconds.isFinite, seconds >= 0 else { return }
        let n = Double(max(1, rows))
        if rows <= Self.smallStepRows {
            if let small = smallSeconds {
                smallSeconds = small + Self.weight * (seconds - small)
                smallRows += Self.weight * (n - smallRows)
            } else {
                smallSeconds = seconds
                smallRows = n
            }
        } else {
            bigSecondsPerRow = Self.average(bigSecondsPerRow, seconds / n)
        }
    }

    private static func average(_ old: Double?, _ new: Double) -> Double {
        guard let old else { return new }
        return old + weight * (new - old)
    }
}
