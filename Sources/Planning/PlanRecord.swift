/// One entry of the coordinator's plan history (shown by `caravanctl status`): a plan it made, or
/// a failure to make one.
public struct PlanRecord: Sendable, Equatable {
    /// The plan epoch (0 for a failure, which makes no plan).
    public var epoch: UInt64
    /// When, on the membership's clock (milliseconds since the coordinator started).
    public var atMs: UInt64
    /// Why the plan was made, e.g. "initial plan", "worker w2 stopped sending heartbeats (lost)".
    public var reason: String
    /// Its stages (empty for a failure).
    public var stages: [PlannedStage]
    /// True once every stage reported ready and the plan served.
    public var served: Bool

    /// Creates a record.
    public init(epoch: UInt64, atMs: UInt64, reason: String, stages: [PlannedStage], served: Bool = false) {
        self.epoch = epoch
        self.atMs = atMs
        self.reason = reason
        self.stages = stages
        self.served = served
    }
}
