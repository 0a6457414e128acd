extension Duration {
    /// The duration in whole milliseconds, rounded toward zero (what the wire's `_ms` fields and
    /// log lines carry).
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
