import Planning
/// The slow-worker rule over time, as a pure state machine fed at every balance check.
///
/// A re-plan for speed costs every running job a replay and moves layers, so one is made only
/// when both hold:
/// - **sustained**: the bottleneck the re-plan would remove has been seen at every check for at
///   least ``sustainedSteps`` steps of the slowest stage in a row (a few slow samples while other
///   processes take the CPU are a transient, not a slow worker); a balanced check, a new plan
///   epoch, or fewer steps than before (a reload) start the count again;
/// - **worth it**: the time the new pipeline saves over ``horizonSeconds`` at the current load
///   (the fraction of the time the slowest stage was busy since the count started) exceeds the
///   time its pulls take at the link speed.
public struct SlowWatch: Sendable, Equatable {
    /// Steps of the slowest stage the bottleneck must last.
    public let sustainedSteps: UInt64
    /// How far ahead a gain is counted, seconds.
    public let horizonSeconds: Double
    /// Where the count started: epoch, time (ms) and the slowest stage's steps.
    public private(set) var since: Mark?

    /// Where a count started.
    public struct Mark: Sendable, Equatable {
        /// The plan epoch watched.
        public var epoch: UInt64
        /// When, milliseconds.
        public var atMs: UInt64
        /// Steps the slowest stage had run.
        public var steps: UInt64
    }

    /// A watch with nothing seen yet.
    public init(sustainedSteps: UInt64, horizonSeconds: Double) {
        self.sustainedSteps = sustainedSteps
        self.horizonSeconds = horizonSeconds
    }

    /// The predicted saving of `decision` over the horizon at `busy` (0...1) load, seconds.
    public func gainSeconds(_ decision: Rebalancer.Decision, busy: Double) -> Double {
        guard decision.currentMs > 0 else { return 0 }
        return horizonSeconds * min(1, max(0, busy)) * max(0, 1 - decision.predictedMs / decision.currentMs)
    }

    /// One balance check of the plan of `epoch` at `now` (ms): `candidate` is what
    /// ``Rebalancer/evaluate(stages:candidates:model:contextTokens:batchSequences:slowFactor:minimumSteps:movement:)``
    /// says now (nil: balanced). Returns the decision to act on (its reason says why it pays), or nil.
    public mutating func observe(_ candidate: Rebalancer.Decision?, epoch: UInt64, now: UInt64) -> Rebalancer.Decision? {
        guard let candidate else {
            since = nil
            return nil
        }
        guard let start = since, start.epoch == epoch, candidate.slowestSteps >= start.steps, now >= start.atMs else {
            since = Mark(epoch: epoch, atMs: now, steps: candidate.slowestSteps)
            return nil
        }
        let steps = candidate.slowestSteps - start.steps
        guard steps >= sustainedSteps, now > start.atMs else { return nil }
        let busy = Double(steps) * candidate.currentMs / Double(now - start.atMs)
        let gain = gainSeconds(candidate, busy: busy)
        guard gain > candidate.moveSeconds else { return nil }
        since = nil
        var decision = candidate
        decision.reason += " (slow for \(steps) steps; saves \(Rebalancer.format(gain)) s over \(Rebalancer.format(horizonSeconds)) s "
            + "at \(Int((min(1, busy) * 100).rounded())) % load, moving \(decision.moveBytes >> 20) MiB takes \(Rebalancer.format(decision.moveSeconds)) s)"
        return decision
    }
}
