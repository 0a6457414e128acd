import CaravanCore
import CoreMetrics
import Metrics

/// The coordinator's Prometheus metrics, recorded through swift-metrics (no-ops unless the daemon
/// bootstrapped a backend, see `--metrics`). Names follow Prometheus conventions: `_total` for
/// counters, base units (seconds, bytes). `docs/operations.md` lists them with their meaning.
///
/// Counters and histograms are recorded where things happen (a token, a finished job, a plan);
/// gauges that describe the cluster at a moment (jobs queued, worker health, step times) are set
/// from a ``ClusterSnapshot`` by ``refresh(_:)`` once per heartbeat tick.
enum CoordinatorMetrics {
    /// Tokens sampled for jobs (each counted once, also across replays).
    static let tokensGenerated = Counter(label: "caravan_tokens_generated_total")
    /// Prompt tokens of jobs whose prompt was processed (counted at a job's first token).
    static let promptTokens = Counter(label: "caravan_prompt_tokens_total")
    /// Jobs accepted.
    static let jobsSubmitted = Counter(label: "caravan_jobs_submitted_total")
    /// Time from a job's acceptance to its first token.
    static let timeToFirstToken = Metrics.Timer(label: "caravan_time_to_first_token_seconds")
    /// Time between two tokens of a job.
    static let tokenLatency = Metrics.Timer(label: "caravan_token_latency_seconds")
    /// Round trip of one pipeline step (coordinator -> every stage -> coordinator).
    static let pipelineStep = Metrics.Timer(label: "caravan_pipeline_step_seconds")
    /// Activation bytes sent to the first stage and results received from the last one.
    static let bytesToFirstStage = Counter(label: "caravan_activation_bytes_sent_total", dimensions: [("peer", "first_stage")])
    static let bytesFromLastStage = Counter(label: "caravan_activation_bytes_received_total", dimensions: [("peer", "last_stage")])
    /// Model bytes served to workers pulling their layers.
    static let modelBytesServed = Counter(label: "caravan_model_source_bytes_sent_total")
    /// Plans that failed (the cluster could not hold the model; jobs wait).
    static let planFailures = Counter(label: "caravan_plan_failures_total")
    /// Whether jobs are accepted now (1) or wait (0).
    static let serving = Gauge(label: "caravan_serving")
    /// The current plan epoch.
    static let planEpoch = Gauge(label: "caravan_plan_epoch")
    /// Workers the coordinator waits for before planning.
    static let expectedWorkers = Gauge(label: "caravan_expected_workers")

    /// Jobs that ended, by outcome (`finished`, `failed`, `cancelled`).
    static func jobEnded(_ outcome: String) {
        Counter(label: "caravan_jobs_ended_total", dimensions: [("outcome", outcome)]).increment()
    }

    /// A plan made, by purpose (`initial`, `recovery`, `growth`, `rebalance`).
    static func planned(_ purpose: PlanPurpose) {
        Counter(label: "caravan_plans_total", dimensions: [("purpose", purpose.rawValue)]).increment()
    }

    /// What kind of fault the coordinator detected.
    enum Fault: String {
        /// A worker was silent past the heartbeat timeout.
        case workerLost = "worker_lost"
        /// A worker's control connection was closed by its end (its process ended) and it did not
        /// connect again within the grace.
        case connectionClosed = "connection_closed"
        /// A pipeline step failed or timed out.
        case stepFailed = "step_failed"
        /// A worker could not load its assignment.
        case loadFailed = "load_failed"
    }

    /// A fault detected.
    static func fault(_ kind: Fault, count: Int = 1) {
        Counter(label: "caravan_faults_total", dimensions: [("kind", kind.rawValue)]).increment(by: count)
    }

    /// Makes every labelled series exist from the start (at 0), so that dashboards and rate()
    /// see a counter before its first event.
    static func declare() {
        for outcome in ["finished", "failed", "cancelled"] {
            Counter(label: "caravan_jobs_ended_total", dimensions: [("outcome", outcome)]).increment(by: 0)
        }
        for purpose in [PlanPurpose.initial, .recovery, .growth, .rebalance] {
            Counter(label: "caravan_plans_total", dimensions: [("purpose", purpose.rawValue)]).increment(by: 0)
        }
        for kind in [Fault.workerLost, .connectionClosed, .stepFailed, .loadFailed] {
            Counter(label: "caravan_faults_total", dimensions: [("kind", kind.rawValue)]).increment(by: 0)
        }
        for c in [tokensGenerated, promptTokens, jobsSubmitted, bytesToFirstStage, bytesFromLastStage, modelBytesServed, planFailures] {
            c.increment(by: 0)
        }
    }

    /// Worker ids that have per-worker gauges now (removed once the coordinator forgets them).
    private static let reported = LockedValue(Set<String>())

    /// Sets the gauges from `snapshot`.
    static func refresh(_ snapshot: ClusterSnapshot) {
        var queued = 0
        var running = 0
        for job in snapshot.jobs {
            switch job.status.state {
            case .queued: queued += 1
            case .prefill, .generating: running += 1
            default: break
            }
        }
        Gauge(label: "caravan_jobs", dimensions: [("state", "queued")]).record(queued)
        Gauge(label: "caravan_jobs", dimensions: [("state", "running")]).record(running)
        serving.record(snapshot.unavailableReason == nil ? 1 : 0)
        expectedWorkers.record(snapshot.expectedWorkers)
        var epoch: UInt64 = 0
        switch snapshot.phase {
        case .assigning(let e, _, _), .serving(let e, _, _): epoch = e
        default: epoch = snapshot.planHistory.last?.epoch ?? 0
        }
        planEpoch.record(Int64(clamping: epoch))

        var counts = ["healthy": 0, "suspect": 0, "draining": 0, "lost": snapshot.lostMembers.count]
        var seen = Set<String>()
        for member in snapshot.members {
            let health = healthOf(member, snapshot)
            counts[health, default: 0] += 1
            seen.insert(member.workerID)
            let worker = [("worker", member.workerID)]
            Gauge(label: "caravan_worker_healthy", dimensions: worker).record(health == "healthy" ? 1 : 0)
            Gauge(label: "caravan_worker_step_seconds", dimensions: worker).record(Double(member.recentStepMs) / 1000)
            Gauge(label: "caravan_worker_rows_per_step", dimensions: worker).record(Double(member.recentRowsPerStep))
            Gauge(label: "caravan_worker_steps", dimensions: worker).record(Int64(clamping: member.stepsRun))
            Gauge(label: "caravan_worker_memory_free_bytes", dimensions: worker).record(Int64(clamping: member.freeMemoryBytes))
            Gauge(label: "caravan_worker_memory_used_bytes", dimensions: worker).record(Int64(clamping: member.stageMemoryBytes))
        }
        for lost in snapshot.lostMembers where !seen.contains(lost.workerID) {
            seen.insert(lost.workerID)
            Gauge(label: "caravan_worker_healthy", dimensions: [("worker", lost.workerID)]).record(0)
        }
        for (health, n) in counts { Gauge(label: "caravan_workers", dimensions: [("health", health)]).record(n) }
        let gone = reported.withLock { ids in
            defer { ids = seen }
            return ids.subtracting(seen)
        }
        for gone in gone {
            let worker = [("worker", gone)]
            Gauge(label: "caravan_worker_healthy", dimensions: worker).destroy()
            for name in ["caravan_worker_step_seconds", "caravan_worker_rows_per_step", "caravan_worker_steps",
                         "caravan_worker_memory_free_bytes", "caravan_worker_memory_used_bytes"] {
                Gauge(label: name, dimensions: worker).destroy()
            }
        }
    }

    /// The health label of a member, judged as `caravanctl status` judges it.
    private static func healthOf(_ member: Member, _ s: ClusterSnapshot) -> String {
        switch AdminReports.health(member, snapshot: s) {
        case .draining: "draining"
        case .suspect: "suspect"
        case .lost: "lost"
        default: "healthy"
        }
    }
}
