import ZeroMQ

/// Required-field rules for control, job and admin messages, applied to every message sent or
/// received through ``WireCodec`` (activations and step results have their own, in
/// `ActivationStep+Wire.swift`).
enum MessageRules {
    static func validate(_ body: Caravan_V1_Envelope.OneOf_Body) throws(WireError) {
        switch body {
        case .hello(let m):
            guard m.protocolVersion != 0 else { throw .missingField("hello.protocol_version") }
            guard WireProtocol.supportedVersions.contains(m.protocolVersion) else {
                throw .unsupportedVersion(m.protocolVersion)
            }
            guard m.role != .unspecified else { throw .missingField("hello.role") }
            try known(m.role.rawValue, "hello.role", m.role)
            try nonEmpty(m.nodeID, "hello.node_id")
        case .register(let m):
            try nonEmpty(m.workerID, "register.worker_id")
            try short(m.workerID, "register.worker_id", maxBytes: maxWorkerIDBytes)
            try nonEmpty(m.dataAddress, "register.data_address")
            try short(m.dataAddress, "register.data_address", maxBytes: maxAddressBytes)
            if !m.dataPublicKey.isEmpty { try curveKey(m.dataPublicKey, "register.data_public_key") }
            guard m.hasCapabilities else { throw .missingField("register.capabilities") }
            guard m.capabilities.cores > 0 else { throw .missingField("register.capabilities.cores") }
            try finite(m.capabilities.measuredGflops, "register.capabilities.measured_gflops", in: 0...maxSpeed)
            for (i, held) in m.capabilities.models.enumerated() {
                try model(held.model, "register.capabilities.models[\(i)].model", present: held.hasModel)
            }
            for (i, dtype) in m.capabilities.activationDtypes.enumerated() {
                try checkDType(dtype, "register.capabilities.activation_dtypes[\(i)]")
            }
        case .registerAck(let m):
            if m.accepted {
                guard m.heartbeatIntervalMs > 0 else { throw .missingField("register_ack.heartbeat_interval_ms") }
            } else {
                try nonEmpty(m.reason, "register_ack.reason")
            }
        case .heartbeat(let m):
            try nonEmpty(m.senderID, "heartbeat.sender_id")
            try known(m.state.rawValue, "heartbeat.state", m.state)
            try finite(Double(m.recentStepMs), "heartbeat.recent_step_ms", in: 0...maxStepMs)
            try finite(Double(m.recentRowsPerStep), "heartbeat.recent_rows_per_step", in: 0...Double(maxRowsPerStep))
        case .stageAssignment(let m):
            guard m.planEpoch > 0 else { throw .missingField("stage_assignment.plan_epoch") }
            try model(m.model, "stage_assignment.model", present: m.hasModel)
            guard m.layerStart < m.layerEnd else {
                throw .invalidField("stage_assignment.layer_end",
                                    reason: "layer range [\(m.layerStart), \(m.layerEnd)) is empty")
            }
            if m.model.layerCount > 0, m.layerEnd > m.model.layerCount {
                throw .invalidField("stage_assignment.layer_end",
                                    reason: "\(m.layerEnd) exceeds the model's \(m.model.layerCount) layers")
            }
            guard m.stageCount > 0, m.stageIndex < m.stageCount else {
                throw .invalidField("stage_assignment.stage_index", reason: "stage \(m.stageIndex) of \(m.stageCount)")
            }
            guard m.embedsTokens == (m.stageIndex == 0) else {
                throw .invalidField("stage_assignment.embeds_tokens", reason: "must be set exactly for stage 0")
            }
            guard m.producesLogits == (m.stageIndex == m.stageCount - 1) else {
                throw .invalidField("stage_assignment.produces_logits", reason: "must be set exactly for the last stage")
            }
            try nonEmpty(m.nextHopAddress, "stage_assignment.next_hop_address")
            try checkDType(m.activationDtype, "stage_assignment.activation_dtype")
            guard m.maxContextTokens > 0 else { throw .missingField("stage_assignment.max_context_tokens") }
            guard m.maxBatchSequences > 0 else { throw .missingField("stage_assignment.max_batch_sequences") }
            guard m.maxBatchTokens > 0 else { throw .missingField("stage_assignment.max_batch_tokens") }
            try nonEmpty(m.resultAddress, "stage_assignment.result_address")
            guard m.dataClientKeys.count <= maxDataClientKeys else {
                throw .invalidField("stage_assignment.data_client_keys",
                                    reason: "\(m.dataClientKeys.count) keys (at most \(maxDataClientKeys))")
            }
            for (i, key) in m.dataClientKeys.enumerated() {
                try curveKey(key, "stage_assignment.data_client_keys[\(i)]")
            }
            guard m.continuing.count <= maxContinuingSequences else {
                throw .invalidField("stage_assignment.continuing",
                                    reason: "\(m.continuing.count) sequences (at most \(maxContinuingSequences))")
            }
            if m.maxContextTokens > 0, let bad = m.continuing.first(where: { $0.committedPositions > m.maxContextTokens }) {
                throw .invalidField("stage_assignment.continuing",
                                    reason: "sequence \(bad.sequenceID): \(bad.committedPositions) committed positions exceed the context of \(m.maxContextTokens)")
            }
        case .assignmentReady(let m):
            guard m.planEpoch > 0 else { throw .missingField("assignment_ready.plan_epoch") }
            try nonEmpty(m.workerID, "assignment_ready.worker_id")
            if !m.ready { try nonEmpty(m.error, "assignment_ready.error") }
            guard m.held.count <= maxContinuingSequences else {
                throw .invalidField("assignment_ready.held", reason: "\(m.held.count) sequences (at most \(maxContinuingSequences))")
            }
        case .drain:
            break
        case .releaseSequences(let m):
            guard m.planEpoch > 0 else { throw .missingField("release_sequences.plan_epoch") }
            guard !m.sequenceIds.isEmpty else { throw .missingField("release_sequences.sequence_ids") }
        case .standbyAssignment(let m):
            guard m.planEpoch > 0 else { throw .missingField("standby_assignment.plan_epoch") }
            try model(m.model, "standby_assignment.model", present: m.hasModel)
            guard m.ranges.count <= maxStandbyRanges else {
                throw .invalidField("standby_assignment.ranges", reason: "\(m.ranges.count) ranges (at most \(maxStandbyRanges))")
            }
            var previousEnd: UInt32 = 0
            for (i, r) in m.ranges.enumerated() {
                guard r.layerStart < r.layerEnd, i == 0 || r.layerStart >= previousEnd else {
                    throw .invalidField("standby_assignment.ranges[\(i)]",
                                        reason: "[\(r.layerStart), \(r.layerEnd)) is empty or not after the range before it")
                }
                if m.model.layerCount > 0, r.layerEnd > m.model.layerCount {
                    throw .invalidField("standby_assignment.ranges[\(i)]",
                                        reason: "\(r.layerEnd) exceeds the model's \(m.model.layerCount) layers")
                }
                previousEnd = r.layerEnd
            }
            guard m.mirrors.count <= maxMirrors else {
                throw .invalidField("standby_assignment.mirrors", reason: "\(m.mirrors.count) mirrors (at most \(maxMirrors))")
            }
            for (i, mirror) in m.mirrors.enumerated() {
                let name = "standby_assignment.mirrors[\(i)]"
                guard mirror.layers.layerStart < mirror.layers.layerEnd,
                      m.model.layerCount == 0 || mirror.layers.layerEnd <= m.model.layerCount else {
                    throw .invalidField(name + ".layers", reason: "[\(mirror.layers.layerStart), \(mirror.layers.layerEnd)) is not a range of the model")
                }
                try nonEmpty(mirror.holderAddress, name + ".holder_address")
                try short(mirror.holderAddress, name + ".holder_address", maxBytes: maxAddressBytes)
                try short(mirror.holderID, name + ".holder_id", maxBytes: maxWorkerIDBytes)
                if !mirror.holderPublicKey.isEmpty { try curveKey(mirror.holderPublicKey, name + ".holder_public_key") }
            }
        case .activation, .stepResult, .modelChunk, .kvRows:
            break  // validated with their domain conversions
        case .modelInfoRequest(let m):
            try sha256(m.sha256, "model_info_request.sha256")
        case .modelInfo(let m):
            try model(m.model, "model_info.model", present: m.hasModel)
            guard m.dataOffset > 0, m.dataOffset <= m.model.sizeBytes else {
                throw .invalidField("model_info.data_offset", reason: "\(m.dataOffset) is not within the file's \(m.model.sizeBytes) bytes")
            }
            guard m.maxChunkBytes > 0 else { throw .missingField("model_info.max_chunk_bytes") }
        case .modelChunkRequest(let m):
            try sha256(m.sha256, "model_chunk_request.sha256")
            guard m.length > 0 else { throw .missingField("model_chunk_request.length") }
        case .jobSubmit(let m):
            switch m.input {
            case .prompt(let p): try nonEmpty(p, "job_submit.prompt")
            case .chat(let c): guard !c.messages.isEmpty else { throw .missingField("job_submit.chat.messages") }
            case .promptTokens(let t): guard !t.ids.isEmpty else { throw .missingField("job_submit.prompt_tokens.ids") }
            case nil: throw .missingField("job_submit.input")
            }
        case .jobEvent(let m):
            try nonEmpty(m.jobID, "job_event.job_id")
            guard m.event != nil else { throw .missingField("job_event.event") }
        case .jobStatusRequest(let m):
            try nonEmpty(m.jobID, "job_status_request.job_id")
        case .jobStatus(let m):
            try nonEmpty(m.jobID, "job_status.job_id")
            guard m.state != .unspecified else { throw .missingField("job_status.state") }
        case .jobCancel(let m):
            try nonEmpty(m.jobID, "job_cancel.job_id")
        case .jobAttach(let m):
            try nonEmpty(m.jobID, "job_attach.job_id")
        case .clusterStatusRequest, .clusterStatus, .planPreviewRequest, .adminResult:
            break
        case .planPreview(let m):
            if !m.feasible { try nonEmpty(m.reason, "plan_preview.reason") }
        case .drainRequest(let m):
            try nonEmpty(m.workerID, "drain_request.worker_id")
        case .error(let m):
            try nonEmpty(m.code, "error.code")
        }
    }

    /// Most client keys one stage assignment may list (a pipeline's stages admit a few each).
    static let maxDataClientKeys = 64
    /// Most continuing sequences one assignment names (a few bytes each, well within a control frame).
    static let maxContinuingSequences = 8192
    /// Most ranges one standby assignment lists.
    static let maxStandbyRanges = 4096
    /// Most mirrors one standby assignment lists (a stage has two neighbours).
    static let maxMirrors = 64
    /// Longest worker id, bytes (it names the worker in logs, status tables and plans).
    static let maxWorkerIDBytes = 128
    /// Longest endpoint address, bytes.
    static let maxAddressBytes = 512
    /// Largest speed a worker may report (`measured_gflops`; an exaflop).
    static let maxSpeed = 1e9
    /// Largest step time a heartbeat may report, milliseconds (a day).
    static let maxStepMs = 86_400_000.0
    /// Most rows per step a heartbeat may report (a step carries at most 65,536 rows).
    static let maxRowsPerStep = 1 << 16

    /// A number from a peer: finite and within `range` (NaN and infinities trap in `Int(_:)` and
    /// poison every sum they enter).
    private static func finite(_ value: Double, _ name: String, in range: ClosedRange<Double>) throws(WireError) {
        guard value.isFinite, range.contains(value) else {
            throw .invalidField(name, reason: "\(value) is not a finite number in [\(range.lowerBound), \(range.upperBound)]")
        }
    }

    private static func short(_ value: String, _ name: String, maxBytes: Int) throws(WireError) {
        guard value.utf8.count <= maxBytes else {
            throw .invalidField(name, reason: "\(value.utf8.count) bytes (at most \(maxBytes))")
        }
    }

    /// A CURVE public key in Z85 (40 characters decoding to 32 bytes).
    private static func curveKey(_ value: String, _ name: String) throws(WireError) {
        guard value.utf8.count == 40, Z85.decode(value)?.count == 32 else {
            throw .invalidField(name, reason: "'\(value.prefix(64))' is not a 40-character Z85 CURVE public key")
        }
    }

    private static func nonEmpty(_ value: String, _ name: String) throws(WireError) {
        if value.isEmpty { throw .missingField(name) }
    }

    private static func known<E: CaseIterable & Equatable>(_ raw: Int, _ name: String, _ value: E) throws(WireError) {
        // Generated enums list only their declared cases in `allCases` (not UNRECOGNIZED).
        if !E.allCases.contains(value) {
            throw .invalidField(name, reason: "unknown value \(raw)")
        }
    }

    private static func checkDType(_ dtype: Caravan_V1_DType, _ name: String) throws(WireError) {
        do {
            _ = try TensorDType(wire: dtype)
        } catch {
            throw .invalidField(name, reason: error.description)
        }
    }

    private static func model(_ m: Caravan_V1_ModelIdentity, _ name: String, present: Bool) throws(WireError) {
        guard present else { throw .missingField(name) }
        try sha256(m.sha256, "\(name).sha256")
    }

    /// A SHA-256 in lowercase hex (64 digits).
    static func sha256(_ value: String, _ name: String) throws(WireError) {
        try nonEmpty(value, name)
        guard value.utf8.count == 64, value.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw .invalidField(name, reason: "'\(value)' is not 64 lowercase hex digits")
        }
    }
}
