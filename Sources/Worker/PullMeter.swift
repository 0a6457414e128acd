import CaravanCore

/// The rate and time left of a pull from samples of (seconds since start, bytes done): the rate
/// over the last ``window`` seconds (so a pull that slows down shows it at once, unlike an average
/// since the start), the time left at that rate. A pure value; the fetcher feeds it.
public struct PullMeter: Sendable {
    /// Bytes to pull in all.
    public let totalBytes: UInt64
    /// Seconds of samples the rate is measured over.
    public let window: Double
    private var samples: [(seconds: Double, bytes: UInt64)] = []

    /// A meter for `totalBytes`, measuring the rate over `window` seconds.
    public init(totalBytes: UInt64, window: Double = 5) {
        self.totalBytes = totalBytes
        self.window = max(0.1, window)
    }

    /// Records that `bytes` were done `seconds` after the start (times never go back).
    public mutating func record(bytes: UInt64, at seconds: Double) {
        if let last = samples.last, seconds < last.seconds { return }
        samples.append((seconds, bytes))
        // Keep one sample at or before the window's start, so the window is always spanned.
        while samples.count > 2, samples[1].seconds <= seconds - window { samples.removeFirst() }
    }

    /// Bytes done at the last sample.
    public var doneBytes: UInt64 { samples.last?.bytes ?? 0 }

    /// Bytes per second over the window (0 with fewer than two samples or no time between them).
    public var bytesPerSecond: Double {
        guard let first = samples.first, let last = samples.last, last.seconds > first.seconds,
              last.bytes >= first.bytes else { return 0 }
        return Double(last.bytes - first.bytes) / (last.seconds - first.seconds)
    }

    /// Seconds left at the current rate from `done` bytes (default: the last sample's); 0 when
    /// done, nil without a rate.
    public func etaSeconds(done: UInt64? = nil) -> Double? {
        let d = done ?? doneBytes
        let left = totalBytes > d ? totalBytes - d : 0
        if left == 0 { return 0 }
        let rate = bytesPerSecond
        return rate > 0 ? Double(left) / rate : nil
    }

    /// The progress of a pull of `layers` with `done` bytes done (default: the last sample's),
    /// at the rate of the samples.
    public func progress(layers: LayerRange, done: UInt64? = nil) -> PullProgress {
        let d = min(done ?? doneBytes, totalBytes)
        return PullProgress(layers: layers, totalBytes: totalBytes, doneBytes: d, bytesPerSecond: bytesPerSecond,
                            etaSeconds: etaSeconds(done: d))
    }
}
