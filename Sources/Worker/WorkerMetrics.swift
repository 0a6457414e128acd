import CoreMetrics
import Metrics

/// A worker's Prometheus metrics, recorded through swift-metrics (no-ops unless the daemon
/// bootstrapped a backend, see `--metrics`). `docs/operations.md` lists them.
enum WorkerMetrics {
    /// Compute time of one step of this worker's stage (forward pass and, on the last stage, sampling).
    static let stepTime = Metrics.Timer(label: "caravan_stage_step_seconds")
    /// Steps run and rows (tokens) they carried.
    static let steps = Counter(label: "caravan_stage_steps_total")
    static let rows = Counter(label: "caravan_stage_rows_total")
    /// Steps that failed here (bad input, a failed forward, an output that could not be sent).
    static let stepFailures = Counter(label: "caravan_stage_step_failures_total")
    /// Activation bytes received on the data socket (from the previous stage or the coordinator).
    static let bytesReceived = Counter(label: "caravan_activation_bytes_received_total", dimensions: [("peer", "previous_stage")])
    /// Activation bytes sent to the next stage, and results sent to the coordinator.
    static let bytesToNextStage = Counter(label: "caravan_activation_bytes_sent_total", dimensions: [("peer", "next_stage")])
    static let bytesToCoordinator = Counter(label: "caravan_activation_bytes_sent_total", dimensions: [("peer", "coordinator")])
    /// Layer bytes pulled from the coordinator's model source (what the cache did not have).
    static let layerBytesPulled = Counter(label: "caravan_layer_bytes_pulled_total")
    /// Layer bytes a pull found in the local cache already.
    static let layerBytesReused = Counter(label: "caravan_layer_bytes_reused_total")
    /// Layer-positions recomputed for replayed rows after re-plans (layers x positions).
    static let replayedLayerPositions = Counter(label: "caravan_stage_replayed_layer_positions_total")
    /// Bytes of KV rows streamed to the holders of standby copies of this stage's layers.
    static let mirrorBytesSent = Counter(label: "caravan_kv_mirror_bytes_sent_total")
    /// Bytes of KV rows mirrored here from other stages (of the plan running).
    static let mirrorBytes = Gauge(label: "caravan_kv_mirror_bytes")
    /// Stage loads, by result (`ok`, `failed`).
    static func loaded(ok: Bool) {
        Counter(label: "caravan_stage_loads_total", dimensions: [("result", ok ? "ok" : "failed")]).increment()
    }
    /// Time a stage load took (pull included).
    static let loadTime = Metrics.Timer(label: "caravan_stage_load_seconds")
    /// KV cache bytes allocated now, and what the assignment's batch at full context would take.
    static let kvCacheBytes = Gauge(label: "caravan_kv_cache_bytes")
    static let kvCacheBudgetBytes = Gauge(label: "caravan_kv_cache_budget_bytes")
    /// Weight bytes of the loaded stage.
    static let weightBytes = Gauge(label: "caravan_stage_weight_bytes")
    /// Layers of the loaded stage (0 when none).
    static let layers = Gauge(label: "caravan_stage_layers")
    /// Whether a stage is loaded and ready (1) or not (0).
    static let ready = Gauge(label: "caravan_worker_ready")
    /// Seconds since the coordinator was last heard from.
    static let coordinatorSilence = Gauge(label: "caravan_coordinator_silence_seconds")

    /// Makes every series exist from the start (at 0).
    static func declare() {
        for c in [steps, rows, stepFailures, bytesReceived, bytesToNextStage, bytesToCoordinator, layerBytesPulled, layerBytesReused] {
            c.increment(by: 0)
        }
        for ok in [true, false] {
            Counter(label: "caravan_stage_loads_total", dimensions: [("result", ok ? "ok" : "failed")]).increment(by: 0)
        }
        for g in [kvCacheBytes, kvCacheBudgetBytes, weightBytes, layers, ready] { g.record(0) }
    }
}
