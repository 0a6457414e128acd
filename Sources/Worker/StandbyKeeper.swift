import CaravanCore
import CaravanWire
import Foundation
import Logging

/// Keeps a worker's standby copies (``StandbyAssignment``): pulls their layers into the layer
/// cache in the background, only while the worker's own stage is loaded and serving, at the
/// fetcher's standby priority (one connection, a small window), within the standby budget.
///
/// A stage load always comes first: ``pause()`` stops a running pull (and waits for it, so the
/// load finds the cache free) before the load starts, and the pull resumes from where it was
/// (blocks written stay cached) once the new stage serves and its own standby assignment has
/// come. A range is pulled in slices of a few layers, with a pause between them, so that another
/// worker sharing the cache directory waits for its lock no longer than one slice.
final class StandbyKeeper: Sendable {
    /// One pull: the layers of `LayerPull` at standby priority, at most `budget` bytes.
    typealias Pull = @Sendable (LayerPull, _ budget: UInt64) async throws(LayerFetchError) -> LayerFetcher.Report

    private struct State {
        var assignment: StandbyAssignment?
        /// The epoch of the stage loaded and serving (0 while none, or while one loads).
        var servingEpoch: UInt64 = 0
        var task: Task<Void, Never>?
    }

    private let state = LockedValue(State())
    private let budget: UInt64
    private let pull: Pull
    private let pulled: @Sendable () -> Void
    /// Brings the cache within the budget for an assignment before its pull: copies of earlier
    /// plans beyond what the budget leaves are released (``LayerCache/trim(directory:sha256:own:standby:layerCount:budget:)``);
    /// returns the bytes released (nil: the cache was busy).
    private let trim: @Sendable (StandbyAssignment, _ budget: UInt64) -> UInt64?
    private let logger: Logger
    /// Most slices one range is pulled in.
    private let slices: Int
    /// Pause between slices (longer than a waiting pull's poll of the cache lock).
    private let slicePause: Duration
    /// Wait before a pull starts: a new plan's first steps (after a loss, the replay of the
    /// running jobs) go first.
    private let startDelay: Duration
    /// The cache's file system: size and bytes free now (nil = unknown). Standby copies stop
    /// while less than 2 GiB or 2 % of it is free: the rest is for a stage's own pull (and other
    /// programs), whatever the budget says.
    private let diskSpace: @Sendable () -> (total: UInt64, free: UInt64)?

    /// A keeper with `budget` bytes, pulling with `pull`; `pulled` is called after each slice
    /// pulled (the layer cache changed: the worker reports its contents again).
    init(budget: UInt64, logger: Logger, slices: Int = 8, slicePause: Duration = .milliseconds(250),
         startDelay: Duration = .seconds(5), diskSpace: @escaping @Sendable () -> (total: UInt64, free: UInt64)? = { nil },
         trim: @escaping @Sendable (StandbyAssignment, _ budget: UInt64) -> UInt64? = { _, _ in 0 },
         pull: @escaping Pull, pulled: @escaping @Sendable () -> Void) {
        self.trim = trim
        self.startDelay = startDelay
        self.diskSpace = diskSpace
        self.budget = budget
        self.logger = logger
        self.slices = max(1, slices)
        self.slicePause = slicePause
        self.pull = pull
        self.pulled = pulled
    }

    /// The coordinator's standby assignment: replaces the previous one; pulled once the stage of
    /// its epoch serves. The same assignment again (the coordinator sends it again when the
    /// worker registers again, in case the first was lost) changes nothing: a pull that runs
    /// goes on, and copies held are not read back again.
    func assign(_ assignment: StandbyAssignment) {
        guard state.withLock({ $0.assignment != assignment }) else {
            logger.debug("standby copies assigned again (no change)", metadata: ["epoch": "\(assignment.planEpoch)"])
            return
        }
        logger.info("standby copies assigned", metadata: [
            "epoch": "\(assignment.planEpoch)", "ranges": "\(assignment.ranges.map(\.description).joined(separator: " "))",
            "budget": "\(budget)",
        ])
        let previous = state.withLock { s -> Task<Void, Never>? in
            s.assignment = assignment
            defer { s.task = nil }
            return s.task
        }
        previous?.cancel()
        start(after: previous)
    }

    /// A stage is about to load: stops the standby pull and waits until it has let go of the cache.
    func pause() async {
        let running = state.withLock { s -> Task<Void, Never>? in
            s.servingEpoch = 0
            defer { s.task = nil }
            return s.task
        }
        running?.cancel()
        await running?.value
    }

    /// The stage of `epoch` is loaded and serves: pulls the standby copies of that epoch, if any.
    func serving(epoch: UInt64) {
        state.withLock { $0.servingEpoch = epoch }
        start(after: nil)
    }

    /// Starts the pull when the assignment's epoch serves and none runs.
    private func start(after previous: Task<Void, Never>?) {
        state.withLock { s in
            guard s.task == nil, let a = s.assignment, !a.ranges.isEmpty, a.planEpoch == s.servingEpoch, budget > 0 else { return }
            s.task = Task {
                await previous?.value
                try? await Task.sleep(for: self.startDelay)
                guard !Task.isCancelled else { return }
                await self.keep(a)
            }
        }
    }

    private func keep(_ a: StandbyAssignment) async {
        let started = ContinuousClock.now
        if let released = trim(a, budget), released > 0 {
            logger.info("standby: released copies of earlier plans beyond the budget", metadata: [
                "epoch": "\(a.planEpoch)", "released_bytes": "\(released)", "budget": "\(budget)",
            ])
            pulled()
        }
        var remaining = budget
        var downloaded: UInt64 = 0
        var held: [LayerRange] = []
        for range in a.ranges {
            let step = max(1, (range.count + slices - 1) / slices)
            var complete = true
            for first in stride(from: range.start, to: range.end, by: step) {
                let slice = LayerRange(first, min(range.end, first + step))!
                if let disk = diskSpace(), disk.free < max(2 << 30, disk.total / 50) {
                    logger.warning("standby copies stopped: the cache's disk is nearly full", metadata: [
                        "free_bytes": "\(disk.free)", "total_bytes": "\(disk.total)", "layers": "\(slice)",
                    ])
                    complete = false
                    break
                }
                // The coordinator counted tensor bytes; the cache holds whole blocks (a few more).
                guard let report = await pullSlice(a.pull(slice), budget: remaining + (8 << 20)) else {
                    complete = false
                    break
                }
                remaining -= min(remaining, report.neededBytes)
                downloaded += report.downloadedBytes
                pulled()
                guard !Task.isCancelled else { return }
                try? await Task.sleep(for: slicePause)
            }
            guard !Task.isCancelled else { return }
            if complete { held.append(range) }
        }
        logger.info("standby copies held", metadata: [
            "epoch": "\(a.planEpoch)", "ranges": "\(held.map(\.description).joined(separator: " "))",
            "of": "\(a.ranges.map(\.description).joined(separator: " "))", "pulled_bytes": "\(downloaded)",
            "seconds": "\(String(format: "%.2f", Double((ContinuousClock.now - started).components.seconds)))",
        ])
    }

    /// Pulls one slice, trying again while the cache is busy (another worker on this machine)
    /// and a few times after a failure; nil when it could not (or was cancelled).
    private func pullSlice(_ p: LayerPull, budget: UInt64) async -> LayerFetcher.Report? {
        var failures = 0
        while !Task.isCancelled {
            do {
                return try await pull(p, budget)
            } catch {
                if Task.isCancelled { return nil }
                if !error.cacheBusy {
                    failures += 1
                    logger.warning("a standby copy could not be pulled", metadata: [
                        "layers": "\(p.layers)", "attempt": "\(failures)", "reason": "\(error)",
                    ])
                    if failures >= 3 || error.overBudget { return nil }
                }
                try? await Task.sleep(for: .seconds(failures == 0 ? 1 : 2 * failures))
            }
        }
        return nil
    }
}
