import CaravanCore

// The admin reports (CaravanCore's `ClusterReport`, `PlanPreview` and their parts) to and from
// `admin.proto`. Reading checks what a client relies on: the jobs' ids and states (as
// `JobStatus(wire:)` does); an unknown worker state or health reads as `unknown`; a stage with an
// empty layer range has none. Writing is lossless for what a coordinator sends (`caravanctl
// --json` prints the wire form of what it read).

extension ModelIdentity {
    /// The identity of a wire message.
    public init(wire m: Caravan_V1_ModelIdentity) {
        self.init(name: m.name, sha256: m.sha256, sizeBytes: m.sizeBytes, layerCount: Int(m.layerCount))
    }
}

extension Caravan_V1_ModelIdentity {
    /// The wire message of `model`.
    public init(_ model: ModelIdentity) {
        self.init()
        name = model.name
        sha256 = model.sha256
        sizeBytes = model.sizeBytes
        layerCount = UInt32(clamping: model.layerCount)
    }
}

extension WorkerReport.State {
    /// The wire value (``unknown``: unspecified).
    public var wire: Caravan_V1_WorkerState {
        switch self {
        case .idle: .idle
        case .loading: .loading
        case .ready: .ready
        case .draining: .draining
        case .lost: .lost
        case .failed: .failed
        case .unknown: .unspecified
        }
    }

    /// The state of a wire value.
    public init(wire: Caravan_V1_WorkerState) {
        self = Self.allCases.first { $0 != .unknown && $0.wire == wire } ?? .unknown
    }
}

extension WorkerReport.Health {
    /// The wire value (``unknown``: unspecified).
    public var wire: Caravan_V1_WorkerHealth {
        switch self {
        case .healthy: .healthy
        case .suspect: .suspect
        case .lost: .lost
        case .draining: .draining
        case .unknown: .unspecified
        }
    }

    /// The health of a wire value.
    public init(wire: Caravan_V1_WorkerHealth) {
        self = Self.allCases.first { $0 != .unknown && $0.wire == wire } ?? .unknown
    }
}

extension WorkerReport {
    /// The worker of a wire message.
    public init(wire w: Caravan_V1_WorkerStatus) {
        self.init(workerID: w.workerID, dataAddress: w.dataAddress, state: State(wire: w.state), health: Health(wire: w.health),
                  layers: LayerRange(Int(w.layerStart), Int(w.layerEnd)), stageIndex: Int(w.stageIndex),
                  offeredMemoryBytes: w.capabilities.freeMemoryBytes, measuredGflops: w.capabilities.measuredGflops,
                  memoryUsedBytes: w.memoryUsedBytes, memoryFreeBytes: w.memoryFreeBytes, lastHeartbeatAgeMs: w.lastHeartbeatAgeMs,
                  lastHeartbeatUnixMs: w.lastHeartbeatUnixMs, heartbeatRttMs: w.heartbeatRttMs, stepsRun: w.stepsRun,
                  recentStepMs: w.recentStepMs, recentRowsPerStep: w.recentRowsPerStep, tokensPerSecond: w.tokensPerSecond,
                  pull: w.hasPull ? PullProgress(wire: w.pull) : nil)
        standbyRanges = w.standbyRanges.compactMap { LayerRange(span: $0) }
        standbyBytes = w.standbyBytes
        standbyHeldBytes = min(w.standbyHeldBytes, w.standbyBytes)
        standbyBudgetBytes = w.standbyBudgetBytes
    }
}

extension Caravan_V1_WorkerStatus {
    /// The wire message of `worker`.
    public init(_ worker: WorkerReport) {
        self.init()
        workerID = worker.workerID
        dataAddress = worker.dataAddress
        state = worker.state.wire
        health = worker.health.wire
        if let layers = worker.layers {
            layerStart = UInt32(clamping: layers.start)
            layerEnd = UInt32(clamping: layers.end)
        }
        stageIndex = UInt32(clamping: worker.stageIndex)
        if worker.offeredMemoryBytes != 0 || worker.measuredGflops != 0 {
            capabilities.freeMemoryBytes = worker.offeredMemoryBytes
            capabilities.measuredGflops = worker.measuredGflops
        }
        memoryUsedBytes = worker.memoryUsedBytes
        memoryFreeBytes = worker.memoryFreeBytes
        lastHeartbeatAgeMs = worker.lastHeartbeatAgeMs
        lastHeartbeatUnixMs = worker.lastHeartbeatUnixMs
        heartbeatRttMs = worker.heartbeatRttMs
        stepsRun = worker.stepsRun
        recentStepMs = worker.recentStepMs
        recentRowsPerStep = worker.recentRowsPerStep
        tokensPerSecond = worker.tokensPerSecond
        if let p = worker.pull { pull = p.wire }
        standbyRanges = worker.standbyRanges.map(\.span)
        standbyBytes = worker.standbyBytes
        standbyHeldBytes = worker.standbyHeldBytes
        standbyBudgetBytes = worker.standbyBudgetBytes
    }
}

extension StageReport {
    /// The stage of a wire message; nil when its layer range is empty.
    public init?(wire s: Caravan_V1_PlannedStage) {
        guard let layers = LayerRange(Int(s.layerStart), Int(s.layerEnd)) else { return nil }
        self.init(workerID: s.workerID, layers: layers, estimatedMemoryBytes: s.estimatedMemoryBytes,
                  estimatedStepMs: s.estimatedStepMs, workerMemoryBytes: s.workerMemoryBytes)
    }
}

extension Caravan_V1_PlannedStage {
    /// The wire message of `stage`.
    public init(_ stage: StageReport) {
        self.init()
        workerID = stage.workerID
        layerStart = UInt32(clamping: stage.layers.start)
        layerEnd = UInt32(clamping: stage.layers.end)
        estimatedMemoryBytes = stage.estimatedMemoryBytes
        estimatedStepMs = stage.estimatedStepMs
        workerMemoryBytes = stage.workerMemoryBytes
    }
}

extension PlanChange {
    /// The change of a wire message.
    public init(wire c: Caravan_V1_PlanChange) {
        self.init(epoch: c.planEpoch, unixMs: c.unixMs, reason: c.reason, stages: c.stages.compactMap { StageReport(wire: $0) },
                  served: c.served)
    }
}

extension Caravan_V1_PlanChange {
    /// The wire message of `change`.
    public init(_ change: PlanChange) {
        self.init()
        planEpoch = change.epoch
        unixMs = change.unixMs
        reason = change.reason
        stages = change.stages.map { Caravan_V1_PlannedStage($0) }
        served = change.served
    }
}

extension ClusterReport {
    /// The report of a wire message; throws when a job's id or state is not one.
    public init(wire s: Caravan_V1_ClusterStatus) throws(WireError) {
        var jobs: [JobStatus] = []
        jobs.reserveCapacity(s.jobs.count)
        for job in s.jobs { jobs.append(try JobStatus(wire: job)) }
        self.init(planEpoch: s.planEpoch, model: ModelIdentity(wire: s.model), curveEnabled: s.curveEnabled,
                  workers: s.workers.map { WorkerReport(wire: $0) }, lostWorkers: s.lostWorkers.map { WorkerReport(wire: $0) },
                  expectedWorkers: Int(s.expectedWorkers), jobs: jobs, admissionQueued: Int(s.admissionQueued),
                  tokensPerSecond: s.tokensPerSecond, serving: s.serving, waitingReason: s.waitingReason,
                  planHistory: s.planHistory.map { PlanChange(wire: $0) }, nowUnixMs: s.nowUnixMs, clientAccess: s.clientAccess,
                  callerRoles: s.callerRoles)
    }
}

extension Caravan_V1_ClusterStatus {
    /// The wire message of `report`.
    public init(_ report: ClusterReport) {
        self.init()
        planEpoch = report.planEpoch
        if report.model != ModelIdentity() { model = Caravan_V1_ModelIdentity(report.model) }
        curveEnabled = report.curveEnabled
        workers = report.workers.map { Caravan_V1_WorkerStatus($0) }
        lostWorkers = report.lostWorkers.map { Caravan_V1_WorkerStatus($0) }
        expectedWorkers = UInt32(clamping: report.expectedWorkers)
        jobs = report.jobs.map { Caravan_V1_JobStatus($0) }
        admissionQueued = UInt32(clamping: report.admissionQueued)
        tokensPerSecond = report.tokensPerSecond
        serving = report.serving
        waitingReason = report.waitingReason
        planHistory = report.planHistory.map { Caravan_V1_PlanChange($0) }
        nowUnixMs = report.nowUnixMs
        clientAccess = report.clientAccess
        callerRoles = report.callerRoles
    }
}

extension ModelShape {
    /// The shape of a wire message (sizes are not checked here: the planner does).
    public init(wire s: Caravan_V1_ModelShape) {
        self.init(name: s.name, layerBytes: s.layerBytes, embeddingBytes: s.embeddingBytes, outputBytes: s.outputBytes,
                  kvBytesPerTokenPerLayer: s.kvBytesPerTokenPerLayer, embeddingLength: Int(s.embeddingLength),
                  vocabularySize: Int(s.vocabularySize), layerMultiplyAdds: s.layerMultiplyAdds)
    }
}

extension Caravan_V1_ModelShape {
    /// The wire message of `shape`.
    public init(_ shape: ModelShape) {
        self.init()
        name = shape.name
        layerBytes = shape.layerBytes
        embeddingBytes = shape.embeddingBytes
        outputBytes = shape.outputBytes
        kvBytesPerTokenPerLayer = shape.kvBytesPerTokenPerLayer
        embeddingLength = UInt32(clamping: shape.embeddingLength)
        vocabularySize = UInt32(clamping: shape.vocabularySize)
        layerMultiplyAdds = shape.layerMultiplyAdds
    }
}

extension Caravan_V1_PlanPreviewRequest {
    /// The wire message of `request`; throws when a limit does not fit its field (1...2^32-1).
    public init(_ request: PlanPreviewRequest) throws(WireError) {
        self.init()
        if let shape = request.shape { self.shape = Caravan_V1_ModelShape(shape) }
        excludeWorkerIds = request.excludedWorkers
        for (field, value) in [("max_context_tokens", request.maxContextTokens), ("max_batch_sequences", request.maxBatchSequences)] {
            guard let value else { continue }
            guard value >= 1, let n = UInt32(exactly: value) else {
                throw .invalidField("plan_preview_request.\(field)", reason: "must be in 1...\(UInt32.max), got \(value)")
            }
            if field == "max_context_tokens" { maxContextTokens = n } else { maxBatchSequences = n }
        }
    }
}

extension PlanPreview {
    /// The preview of a wire message.
    public init(wire p: Caravan_V1_PlanPreview) {
        self.init(feasible: p.feasible, reason: p.reason, stages: p.stages.compactMap { StageReport(wire: $0) },
                  estimatedTokensPerSecond: p.estimatedTokensPerSecond, modelName: p.modelName,
                  maxContextTokens: Int(p.maxContextTokens), maxBatchSequences: Int(p.maxBatchSequences))
    }
}

extension Caravan_V1_PlanPreview {
    /// The wire message of `preview`.
    public init(_ preview: PlanPreview) {
        self.init()
        feasible = preview.feasible
        reason = preview.reason
        stages = preview.stages.map { Caravan_V1_PlannedStage($0) }
        estimatedTokensPerSecond = preview.estimatedTokensPerSecond
        modelName = preview.modelName
        maxContextTokens = UInt32(clamping: preview.maxContextTokens)
        maxBatchSequences = UInt32(clamping: preview.maxBatchSequences)
    }
}
