import CaravanCore
import Foundation
import Planning

/// Renders admin replies as plain-text tables for `caravanctl` (pure functions).
public enum AdminTables {
    /// Left-aligned columns separated by two spaces; trailing spaces trimmed.
    public static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let count = all.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: count)
        for row in all { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return all.map { row in
            var line = ""
            for (i, cell) in row.enumerated() {
                line += i == row.count - 1 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0)
            }
            while line.hasSuffix(" ") { line.removeLast() }
            return line
        }.joined(separator: "\n")
    }

    /// `bytes` as GiB (>= 1 GiB), MiB or KiB, one decimal.
    public static func bytes(_ bytes: UInt64) -> String {
        let b = Double(bytes)
        if b >= 1_073_741_824 { return String(format: "%.1f GiB", b / 1_073_741_824) }
        if b >= 1_048_576 { return String(format: "%.1f MiB", b / 1_048_576) }
        if bytes == 0 { return "-" }
        return String(format: "%.1f KiB", b / 1024)
    }

    /// A duration in milliseconds as `850ms`, `12.4s`, `3m20s` or `2h05m`.
    public static func age(ms: UInt64) -> String {
        if ms < 1000 { return "\(ms)ms" }
        if ms < 60_000 { return String(format: "%.1fs", Double(ms) / 1000) }
        let s = ms / 1000
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
    }

    private static func layers(_ range: LayerRange?) -> String { range?.description ?? "-" }

    private static func state(_ s: WorkerReport.State) -> String {
        switch s {
        case .idle: "idle"
        case .loading: "loading"
        case .ready: "ready"
        case .draining: "draining"
        case .lost: "lost"
        case .failed: "failed"
        case .unknown: "?"
        }
    }

    private static func health(_ h: WorkerReport.Health) -> String {
        switch h {
        case .healthy: "healthy"
        case .suspect: "SUSPECT"
        case .lost: "LOST"
        case .draining: "draining"
        case .unknown: "?"
        }
    }

    private static func jobState(_ s: JobState) -> String {
        switch s {
        case .queued: "queued"
        case .prefill: "prefill"
        case .generating: "generating"
        case .finished: "finished"
        case .cancelled: "cancelled"
        case .failed: "failed"
        }
    }

    private static func clock(_ unixMs: UInt64) -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date(timeIntervalSince1970: Double(unixMs) / 1000)) + "Z"
    }

    /// The whole `caravanctl status` report: cluster line, workers, jobs, plan history.
    public static func status(_ s: ClusterReport) -> String {
        var out: [String] = []
        let model = s.model.name.isEmpty ? "" : "  model \(s.model.name) (\(s.model.layerCount) layers)"
        let security = s.curveEnabled ? "CURVE" : "plain"
        if s.serving {
            out.append("cluster: SERVING  plan epoch \(s.planEpoch)\(model)  \(security)  "
                + String(format: "%.1f tokens/s", s.tokensPerSecond))
        } else {
            out.append("cluster: WAITING (\(s.waitingReason))  plan epoch \(s.planEpoch)\(model)  \(security)")
        }
        if let line = access(s) { out.append(line) }
        out.append("")
        out.append("workers (\(s.workers.count) registered, \(s.expectedWorkers) expected):")
        let rows = s.workers.map { w -> [String] in
            let step = w.recentStepMs > 0 ? String(format: "%.1f", w.recentStepMs) : "-"
            let rate = w.tokensPerSecond > 0 ? String(format: "%.0f", w.tokensPerSecond) : "-"
            return [w.workerID, w.dataAddress, state(w.state), health(w.health), layers(w.layers),
                    bytes(w.memoryUsedBytes), bytes(w.memoryFreeBytes), step, rate, "\(w.stepsRun)",
                    age(ms: w.lastHeartbeatAgeMs) + " ago"]
        }
        if rows.isEmpty {
            out.append("  (none)")
        } else {
            out.append(table(["WORKER", "ADDRESS", "STATE", "HEALTH", "LAYERS", "MEM USED", "MEM FREE", "STEP MS",
                              "ROWS/S", "STEPS", "LAST HEARD"], rows))
        }
        for w in s.workers {
            if let pull = w.pull { out.append("  " + pulling(w.workerID, pull)) }
            if let line = standby(w) { out.append("  " + line) }
        }
        for w in s.lostWorkers {
            out.append("lost: \(w.workerID) (\(w.dataAddress)), last heard \(clock(w.lastHeartbeatUnixMs))")
        }
        out.append("")
        let queued = s.jobs.filter { $0.state == .queued }.count
        let running = s.jobs.filter { $0.state == .prefill || $0.state == .generating }.count
        out.append("jobs: \(queued) queued, \(running) running"
            + (s.admissionQueued > 0 ? " (\(s.admissionQueued) waiting for KV room)" : ""))
        if !s.jobs.isEmpty {
            out.append(table(["JOB", "STATE", "PROMPT", "GENERATED", "EPOCH", "SUBMITTED", "WAITING / ERROR"], s.jobs.map { j in
                let age = s.nowUnixMs > j.submittedUnixMs ? Self.age(ms: s.nowUnixMs - j.submittedUnixMs) + " ago" : "now"
                var note = j.failure?.message ?? j.waitingReason
                if j.queuePosition > 0 { note = "queue position \(j.queuePosition)" + (note.isEmpty ? "" : ": \(note)") }
                return [j.job.rawValue, jobState(j.state), "\(j.promptTokens)", "\(j.completionTokens)", "\(j.planEpoch)", age, note]
            }))
        }
        out.append("")
        out.append("plan history:")
        if s.planHistory.isEmpty {
            out.append("  (no plan yet)")
        } else {
            out.append(table(["EPOCH", "AT", "SERVED", "REASON", "STAGES"], s.planHistory.map { c in
                ["\(c.epoch)", clock(c.unixMs), c.served ? "yes" : "no", c.reason,
                 c.stages.map { "\($0.workerID)\($0.layers)" }.joined(separator: " ")]
            }))
        }
        return out.joined(separator: "\n")
    }

    /// Who may connect as a client, and the asking key's roles (nil for older coordinators).
    static func access(_ s: ClusterReport) -> String? {
        let clients: String
        switch s.clientAccess {
        case "": return nil
        case "open": clients = "OPEN CLIENTS: any key that knows the coordinator's public key may submit jobs (--open-clients)"
        case "plain": clients = "PLAIN: no keys, no roles; every peer may do everything (--insecure)"
        default: clients = "clients by allow-list"
        }
        return "access: \(clients)" + (s.callerRoles.isEmpty ? "" : "; this key: \(s.callerRoles)")
    }

    /// One worker's standby copies: "w2 standby copies [0, 2) [4, 6): 1.2 GiB of 1.5 GiB held
    /// (budget 20.0 GiB)"; nil for a worker with neither copies nor a budget.
    public static func standby(_ w: WorkerReport) -> String? {
        guard !w.standbyRanges.isEmpty || w.standbyBudgetBytes > 0 else { return nil }
        let budget = w.standbyBudgetBytes > 0 ? "budget \(bytes(w.standbyBudgetBytes))" : "no budget"
        guard !w.standbyRanges.isEmpty else { return "\(w.workerID) standby copies: none (\(budget))" }
        return "\(w.workerID) standby copies \(w.standbyRanges.map(\.description).joined(separator: " ")): "
            + "\(bytes(w.standbyHeldBytes)) of \(bytes(w.standbyBytes)) held (\(budget))"
    }

    /// One worker's pull of layers: "w2 pulling layers [2, 4): 1.2 GiB of 3.9 GiB (31 %), 480 MB/s, 6 s left".
    public static func pulling(_ worker: String, _ p: PullProgress) -> String {
        let percent = p.totalBytes > 0 ? Double(min(p.doneBytes, p.totalBytes)) / Double(p.totalBytes) * 100 : 0
        let rate = p.bytesPerSecond.isFinite && p.bytesPerSecond > 0 ? String(format: "%.0f MB/s", p.bytesPerSecond / 1e6) : "rate unknown"
        // Whole milliseconds, as the wire carries it.
        let etaMs = p.etaSeconds.map { $0.isFinite && $0 > 0 ? UInt64(min($0 * 1000, 1e15)) : 0 } ?? 0
        let eta = etaMs > 0 ? age(ms: etaMs) + " left" : "time left unknown"
        return "\(worker) pulling layers \(p.layers): \(bytes(p.doneBytes)) of \(bytes(p.totalBytes)) "
            + String(format: "(%.0f %%)", percent) + ", \(rate), \(eta)"
    }

    /// A plan preview: one row per stage, memory against what the worker offers, estimates.
    public static func preview(_ p: PlanPreview) -> String {
        guard p.feasible else { return "no plan for \(p.modelName.isEmpty ? "the model" : p.modelName): \(p.reason)" }
        var out = ["plan for \(p.modelName) (context \(p.maxContextTokens) x \(p.maxBatchSequences) sequences):"]
        out.append(table(["STAGE", "WORKER", "LAYERS", "COUNT", "MEMORY", "OFFERED", "STEP MS"], p.stages.enumerated().map { i, st in
            [String(i), st.workerID, st.layers.description, "\(st.layers.count)",
             bytes(st.estimatedMemoryBytes), bytes(st.workerMemoryBytes),
             st.estimatedStepMs > 0 ? String(format: "%.1f", st.estimatedStepMs) : "-"]
        }))
        if p.estimatedTokensPerSecond > 0 {
            out.append(String(format: "estimated: %.1f ms per token, %.2f tokens/s (one sequence)",
                              1000 / p.estimatedTokensPerSecond, p.estimatedTokensPerSecond))
        } else {
            out.append("estimated time per token: unknown until every worker has run steps")
        }
        return out.joined(separator: "\n")
    }

    /// A plan on paper with its predicted time per token.
    public static func prediction(_ p: PaperPrediction, model: String, facts: ModelFacts, workers: [PaperWorker],
                                  cost: TokenCostModel, contextTokens: Int, batchSequences: Int) -> String {
        var out = [String(format: "plan on paper for %@: %d layers, weights %@ (context %d x %d sequences)", model,
                          facts.layerCount, bytes(UInt64(facts.weightBytes)), contextTokens, batchSequences)]
        out.append(table(["STAGE", "WORKER", "SPEED", "LAYERS", "COUNT", "MEMORY", "OFFERED", "MS/TOKEN"],
                         p.plan.stages.enumerated().map { i, st in
            let w = workers.first { $0.id == st.workerID }
            return [String(i), st.workerID, String(format: "%.2f", w?.speed ?? 1), st.layers.description, "\(st.layers.count)",
                    bytes(st.memoryBytes), bytes(w?.memoryBytes ?? 0), String(format: "%.1f", p.stageMs[i])]
        }))
        out.append(String(format: "hops: %@ ms (coordinator -> first, between stages, sampled token back; %.2f ms fixed + bytes at %.0f MB/s)",
                          p.hopMs.map { String(format: "%.2f", $0) }.joined(separator: " + "), cost.hopMs,
                          cost.linkBytesPerMs / 1000))
        out.append(String(format: "predicted: %.0f ms per token = %.2f tokens/s for one sequence; up to %.2f tokens/s with %d+ sequences pipelined",
                          p.msPerToken, p.tokensPerSecond, p.pipelinedTokensPerSecond, p.plan.stages.count))
        out.append(String(format: "cost model: %.2f ms per %.0f MiB of layer weights at speed 1", cost.layerMs,
                          cost.referenceLayerBytes / 1_048_576))
        return out.joined(separator: "\n")
    }
}
