
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
///
/// A worker runs the steps it receives one at a time, in arrival order, whichever lane sent them,
/// so a step can wait behind every step sent before it that has not come back yet (a long prefill
/// of another lane holds up the decode steps of the others for its whole length). A step sent with
/// ``start(_:rows:)`` is therefore given the time predicted for itself and for every step still in
/// flight ahead of it; otherwise a slow but sound worker (a 70B-wide stage on a throttled core) sees
/// its decode steps time out behind a prefill, and each timeout re-plans and replays every job.
public struct StepDeadline: Sendable, Equatable {
    /// A step in flight: its pipeline (plan epoch) and step id.
    public struct InFlight: Hashable, Sendable {
        /// The plan epoch the step runs under.
        public var epoch: UInt64
        /// The step id within that epoch.
        public var step: UInt64
        /// Step `step` of plan epoch `epoch`.
        public init(epoch: UInt64, step: UInt64) {
            self.epoch = epoch
            self.step = step
        }
    }

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
    /// Predicted seconds of each step sent and not yet ended (``start(_:rows:)``, ``end(_:)``).
    public private(set) var inFlight: [InFlight: Double] = [:]
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

    /// The deadline for a step of `rows` rows when nothing else is in flight, seconds.
    public func seconds(rows: Int) -> Double {
        guard let predicted = predictedSeconds(rows: rows) else { return maximum }
        return bounded(factor * predicted)
    }

    /// Registers `step` (of `rows` rows) as sent and returns its deadline, seconds: `factor` times
    /// the time predicted for it and for the steps in flight ahead of it. Call ``end(_:)`` when its
    /// result came, it failed or it was abandoned.
    public mutating func start(_ step: InFlight, rows: Int) -> Double {
        guard let own = predictedSeconds(rows: rows) else { return maximum }
        let ahead = inFlight.values.reduce(0, +)
        inFlight[step] = own
        return bounded(factor * (own + ahead))
    }

    /// `step` is no longer in flight.
    public mutating func end(_ step: InFlight) {
        inFlight[step] = nil
    }

    /// The time a step of `rows` rows is predicted to take on its own, seconds (nil = nothing
    /// measured yet).
    public func predictedSeconds(rows: Int) -> Double? {
        let n = Double(max(1, rows))
        if rows <= Self.smallStepRows {
            return smallSeconds ?? bigSecondsPerRow.map { $0 * n }
        } else if let perRow = bigSecondsPerRow {
            return max(perRow * n, smallSeconds ?? 0)
        } else if let small = smallSeconds {
            return small * n / max(1, smallRows)
        }
        return nil
    }

    private func bounded(_ seconds: Double) -> Double {
        min(maximum, max(minimum, seconds))
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
