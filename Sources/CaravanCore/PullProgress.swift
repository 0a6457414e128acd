/// How far a pull of layers from the coordinator has come: what the worker logs every few seconds
/// and carries in its heartbeats (shown by `caravanctl status`).
public struct PullProgress: Sendable, Equatable {
    /// The layers being pulled.
    public var layers: LayerRange
    /// Bytes to pull in all (blocks already in the layer cache are not counted).
    public var totalBytes: UInt64
    /// Bytes pulled and verified so far.
    public var doneBytes: UInt64
    /// Recent rate, bytes per second (0 until measured).
    public var bytesPerSecond: Double
    /// Seconds left at the recent rate (nil until a rate is measured).
    public var etaSeconds: Double?

    /// A progress report.
    public init(layers: LayerRange, totalBytes: UInt64, doneBytes: UInt64, bytesPerSecond: Double, etaSeconds: Double?) {
        self.layers = layers
        self.totalBytes = totalBytes
        self.doneBytes = doneBytes
        self.bytesPerSecond = bytesPerSecond
        self.etaSeconds = etaSeconds
    }
}
