extension Caravan_V1_ReleaseSequences {
    /// A release of `sequences` on the stages of plan `epoch`.
    public init(epoch: UInt64, sequences: [UInt64]) {
        self.init()
        planEpoch = epoch
        sequenceIds = sequences
    }
}
