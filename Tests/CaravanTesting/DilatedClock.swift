/// A clock whose time runs `factor` times faster than real time: durations measured on it are
/// `factor` times longer, sleeps on it last `1/factor` as long. Given to a worker as its step
/// clock, it makes the worker look slow (to the coordinator's balance checks) without slowing
/// the test.
public struct DilatedClock: Clock {
    public typealias Duration = Swift.Duration
    public typealias Instant = ContinuousClock.Instant

    /// How much faster than real time.
    public let factor: Int
    private let origin: ContinuousClock.Instant

    /// A clock running `factor` (at least 1) times faster than real time from now.
    public init(factor: Int) {
        self.factor = max(1, factor)
        origin = ContinuousClock.now
    }

    public var now: Instant { origin + (ContinuousClock.now - origin) * factor }

    public var minimumResolution: Duration { ContinuousClock().minimumResolution }

    public func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let left = now.duration(to: deadline)
        if left > .zero { try await Task.sleep(for: left / factor) }
    }
}
