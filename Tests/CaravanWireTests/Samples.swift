import CaravanWire
import ZeroMQ

/// Valid examples of every envelope body kind.
enum Samples {
    static let sha = String(repeating: "ab", count: 32)

    static var model: Caravan_V1_ModelIdentity {
        var m = Caravan_V1_ModelIdentity()
        m.name = "SmolLM2-135M-Instruct.Q4_1.gguf"
        m.sha256 = sha
        m.sizeBytes = 92_000_000
        m.layerCount = 30
        return m
    }

    static var capabilities: Caravan_V1_WorkerCapabilities {
        var c = Caravan_V1_WorkerCapabilities()
        c.cores = 2
        c.totalMemoryBytes = 24 << 30
        c.freeMemoryBytes = 20 << 30
        c.measuredGflops = 48.5
        c.measuredMemoryBandwidth = 29e9
        var held = Caravan_V1_HeldModel()
        held.model = model
        c.models = [held]
        c.activationDtypes = [.f16, .f32]
        return c
    }

    static var stageAssignment: Caravan_V1_StageAssignment {
        var s = Caravan_V1_StageAssignment()
        s.planEpoch = 3
        s.model = model
        s.layerStart = 0
        s.layerEnd = 15
        s.stageIndex = 0
        s.stageCount = 2
        s.embedsTokens = true
        s.nextHopAddress = "tcp://10.0.0.6:7001"
        s.nextHopPublicKey = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
        s.activationDtype = .f16
        s.maxContextTokens = 2048
        s.maxBatchSequences = 8
        s.maxBatchTokens = 512
        s.resultAddress = "tcp://10.0.0.1:7200"
        return s
    }

    static var jobStatus: Caravan_V1_JobStatus {
        var j = Caravan_V1_JobStatus()
        j.jobID = "job-1"
        j.state = .generating
        j.promptTokens = 12
        j.completionTokens = 3
        j.submittedUnixMs = 1_700_000_000_000
        j.planEpoch = 3
        return j
    }

    /// One valid body of every kind except activation and step result (which have domain types).
    static var bodies: [Caravan_V1_Envelope.OneOf_Body] {
        var hello = Caravan_V1_Hello()
        hello.protocolVersion = 1
        hello.role = .worker
        hello.nodeID = "worker-a"
        hello.softwareVersion = "0.1.0"

        var register = Caravan_V1_Register()
        register.workerID = "worker-a"
        register.capabilities = capabilities
        register.dataAddress = "tcp://10.0.0.5:7001"

        var ack = Caravan_V1_RegisterAck()
        ack.accepted = true
        ack.heartbeatIntervalMs = 1000
        ack.heartbeatTimeoutMs = 5000
        ack.planEpoch = 2

        var heartbeat = Caravan_V1_Heartbeat()
        heartbeat.senderID = "worker-a"
        heartbeat.planEpoch = 3
        heartbeat.sequence = 42
        heartbeat.sentUnixMs = 1_700_000_000_123
        heartbeat.state = .ready
        heartbeat.freeMemoryBytes = 1 << 30
        heartbeat.inflightSteps = 2

        var ready = Caravan_V1_AssignmentReady()
        ready.planEpoch = 3
        ready.workerID = "worker-a"
        ready.ready = true
        ready.loadMs = 850
        ready.memoryBytes = 300 << 20
        var held = Caravan_V1_HeldSequence()
        held.sequenceID = 12
        held.positions = 400
        ready.held = [held]

        var drain = Caravan_V1_Drain()
        drain.planEpoch = 3
        drain.reason = "re-plan"
        drain.deadlineMs = 10_000

        var submit = Caravan_V1_JobSubmit()
        submit.clientRequestID = "c-1"
        var chat = Caravan_V1_ChatConversation()
        var turn = Caravan_V1_ChatMessage()
        turn.role = "user"
        turn.content = "Hello there"
        chat.messages = [turn]
        submit.chat = chat
        submit.sampling.temperature = 0.7
        submit.sampling.topK = 40
        submit.sampling.seed = 7
        submit.sampling.maxTokens = 64
        submit.sampling.stop = ["\n\n"]

        var event = Caravan_V1_JobEvent()
        event.jobID = "job-1"
        event.sequence = 5
        var token = Caravan_V1_JobToken()
        token.tokenID = 1234
        token.text = " world"
        token.logprob = -0.25
        event.token = token

        var statusRequest = Caravan_V1_JobStatusRequest()
        statusRequest.jobID = "job-1"

        var cancel = Caravan_V1_JobCancel()
        cancel.jobID = "job-1"
        cancel.reason = "user"

        var clusterRequest = Caravan_V1_ClusterStatusRequest()
        clusterRequest.includeFinishedJobs = true

        var cluster = Caravan_V1_ClusterStatus()
        cluster.planEpoch = 3
        cluster.model = model
        cluster.curveEnabled = true
        var worker = Caravan_V1_WorkerStatus()
        worker.workerID = "worker-a"
        worker.state = .ready
        worker.capabilities = capabilities
        worker.layerEnd = 15
        cluster.workers = [worker]
        cluster.jobs = [jobStatus]
        cluster.tokensPerSecond = 95.5

        var previewRequest = Caravan_V1_PlanPreviewRequest()
        previewRequest.excludeWorkerIds = ["worker-b"]
        previewRequest.activationDtype = .f32

        var preview = Caravan_V1_PlanPreview()
        preview.feasible = true
        var stage = Caravan_V1_PlannedStage()
        stage.workerID = "worker-a"
        stage.layerEnd = 30
        stage.estimatedMemoryBytes = 200 << 20
        stage.estimatedStepMs = 9.5
        preview.stages = [stage]
        preview.estimatedTokensPerSecond = 100

        var drainRequest = Caravan_V1_DrainRequest()
        drainRequest.workerID = "worker-b"
        drainRequest.reason = "maintenance"

        var result = Caravan_V1_AdminResult()
        result.ok = true
        result.message = "draining"

        var error = Caravan_V1_ErrorReply()
        error.code = "not_found"
        error.message = "no job job-9"
        var release = Caravan_V1_ReleaseSequences()
        release.planEpoch = 3
        release.sequenceIds = [4, 9]
        var attach = Caravan_V1_JobAttach()
        attach.jobID = "job-7"
        attach.receivedTokens = 12
        var standby = Caravan_V1_StandbyAssignment()
        standby.planEpoch = 3
        standby.model = model
        standby.ranges = [(UInt32(0), UInt32(4)), (20, 30)].map { r in
            var span = Caravan_V1_LayerSpan()
            span.layerStart = r.0
            span.layerEnd = r.1
            return span
        }
        var mirror = Caravan_V1_KVMirror()
        mirror.layers.layerStart = 8
        mirror.layers.layerEnd = 10
        mirror.holderAddress = "tcp://10.0.0.6:7001"
        mirror.holderID = "worker-b"
        standby.mirrors = [mirror]

        return [
            .hello(hello), .register(register), .registerAck(ack), .heartbeat(heartbeat),
            .stageAssignment(stageAssignment), .assignmentReady(ready), .drain(drain),
            .jobSubmit(submit), .jobEvent(event), .jobStatusRequest(statusRequest), .jobStatus(jobStatus),
            .jobCancel(cancel), .clusterStatusRequest(clusterRequest), .clusterStatus(cluster),
            .planPreviewRequest(previewRequest), .planPreview(preview), .drainRequest(drainRequest),
            .adminResult(result), .error(error), .releaseSequences(release), .jobAttach(attach),
            .standbyAssignment(standby),
        ]
    }

    /// Samples of model.proto's requests and answers (a `ModelChunk` needs its payload: see
    /// `ProtocDecodeTests` and `WorkerTests`).
    static var modelBodies: [Caravan_V1_Envelope.OneOf_Body] {
        // (model_chunk, the fourth kind of model.proto, is counted in `modelKindCount`.)
        var infoRequest = Caravan_V1_ModelInfoRequest()
        infoRequest.sha256 = sha
        var info = Caravan_V1_ModelInfo()
        info.model = model
        info.dataOffset = 1_785_664
        info.maxChunkBytes = 4 << 20
        var chunkRequest = Caravan_V1_ModelChunkRequest()
        chunkRequest.sha256 = sha
        chunkRequest.offset = 1 << 20
        chunkRequest.length = 1 << 20
        return [.modelInfoRequest(infoRequest), .modelInfo(info), .modelChunkRequest(chunkRequest)]
    }

    /// Message kinds of model.proto (requests, answers and the chunk).
    static let modelKindCount = 4

    /// Name of a body's kind; exhaustive, so adding a message kind breaks the build here until the
    /// round-trip test covers it.
    static func kind(_ body: Caravan_V1_Envelope.OneOf_Body) -> String {
        switch body {
        case .hello: "hello"
        case .register: "register"
        case .registerAck: "register_ack"
        case .heartbeat: "heartbeat"
        case .stageAssignment: "stage_assignment"
        case .assignmentReady: "assignment_ready"
        case .drain: "drain"
        case .activation: "activation"
        case .stepResult: "step_result"
        case .jobSubmit: "job_submit"
        case .jobEvent: "job_event"
        case .jobAttach: "job_attach"
        case .jobStatusRequest: "job_status_request"
        case .jobStatus: "job_status"
        case .jobCancel: "job_cancel"
        case .clusterStatusRequest: "cluster_status_request"
        case .clusterStatus: "cluster_status"
        case .planPreviewRequest: "plan_preview_request"
        case .planPreview: "plan_preview"
        case .drainRequest: "drain_request"
        case .adminResult: "admin_result"
        case .error: "error"
        case .releaseSequences: "release_sequences"
        case .standbyAssignment: "standby_assignment"
        case .modelInfoRequest: "model_info_request"
        case .modelInfo: "model_info"
        case .modelChunkRequest: "model_chunk_request"
        case .modelChunk: "model_chunk"
        case .kvRows: "kv_rows"
        }
    }

    static let allKindCount = 25

    /// A 2 x 4 activation step with a tensor.
    static func step(dtype: TensorDType = .f16) throws -> ActivationStep {
        let values: [Float] = [0.5, -1.25, 3, 0, 1024, -0.001, 7.75, 42]
        let tensor = try ActivationTensor(values: values, shape: [2, 4], dtype: dtype)
        return ActivationStep(pipelineLabel: "job-7", planEpoch: 3, stepID: 11, rows: [
            SequenceRow(sequenceID: 1, position: 5),
            SequenceRow(sequenceID: 2, position: 9, sample: true),
        ], tensor: tensor)
    }
}
