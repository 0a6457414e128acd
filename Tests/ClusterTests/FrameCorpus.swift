import CaravanWire
import Foundation
import TestSupport
import ZeroMQ

/// Valid frames of every message a daemon socket reads, and their hostile variants: the seeds and
/// mutations of the socket fuzzer (``SocketFuzzTests``). Every case is a function of its seed.
struct FrameCorpus: Sendable {
    /// What the seeds need to know about the running cluster.
    var planEpoch: UInt64
    var modelSHA256: String
    var modelSize: UInt64
    /// The public key the hostile "worker" registers with (its own, so the register passes the
    /// key check and reaches the numbers behind it).
    var hostileWorkerKey: String

    /// One Envelope frame for `body`, written without the codec's checks.
    static func envelope(_ body: Caravan_V1_Envelope.OneOf_Body, requestID: UInt64 = 0) -> [UInt8] {
        var envelope = Caravan_V1_Envelope()
        envelope.protocolVersion = 1
        envelope.requestID = requestID
        envelope.body = body
        return (try? envelope.serializedBytes()) ?? []
    }

    // MARK: Seeds per socket

    /// The client socket: jobs (prompt, chat, token ids with sampling), status, cancel, attach,
    /// and the admin requests (a drain of a worker that does not exist, plan previews).
    func clientSeeds(_ rng: inout SplitMix) -> [[UInt8]] {
        var sampling = Caravan_V1_SamplingParameters()
        sampling.temperature = 0.7
        sampling.topK = 40
        sampling.topP = 0.9
        sampling.seed = 7
        sampling.maxTokens = 4
        sampling.stop = ["\n\n", "END"]
        sampling.logprobs = true
        sampling.topLogprobs = 2
        var byPrompt = Caravan_V1_JobSubmit()
        byPrompt.clientRequestID = "fuzz-prompt"
        byPrompt.prompt = "The capital of France is"
        byPrompt.sampling = sampling
        var byChat = Caravan_V1_JobSubmit()
        byChat.clientRequestID = "fuzz-chat"
        byChat.chat.messages = [.with { $0.role = "system"; $0.content = "Be brief." },
                                .with { $0.role = "user"; $0.content = "Hi" }]
        byChat.sampling = sampling
        var byTokens = Caravan_V1_JobSubmit()
        byTokens.clientRequestID = "fuzz-tokens"
        byTokens.promptTokens.ids = (0..<1 + rng.below(20)).map { _ in UInt32(rng.below(49_152)) }
        byTokens.sampling = sampling
        var preview = Caravan_V1_PlanPreviewRequest()
        preview.maxContextTokens = 256
        preview.maxBatchSequences = 4
        preview.shape.name = "fuzz"
        preview.shape.layerBytes = [1 << 20, 1 << 20, 1 << 20]
        preview.shape.kvBytesPerTokenPerLayer = 4096
        preview.shape.embeddingBytes = 1 << 20
        preview.shape.outputBytes = 1 << 20
        let job = "job-" + String(repeating: "0", count: 32)
        return [
            Self.envelope(.jobSubmit(byPrompt), requestID: 1),
            Self.envelope(.jobSubmit(byChat), requestID: 2),
            Self.envelope(.jobSubmit(byTokens), requestID: 3),
            Self.envelope(.jobStatusRequest(.with { $0.jobID = job }), requestID: 4),
            Self.envelope(.jobCancel(.with { $0.jobID = job; $0.reason = "fuzz" }), requestID: 5),
            Self.envelope(.jobAttach(.with { $0.jobID = job }), requestID: 6),
            Self.envelope(.clusterStatusRequest(.with { $0.includeFinishedJobs = true }), requestID: 7),
            Self.envelope(.planPreviewRequest(preview), requestID: 8),
            Self.envelope(.drainRequest(.with { $0.workerID = "nobody" }), requestID: 9),
        ]
    }

    /// The control socket, as a listed worker key that runs no stage: hello, register (with its
    /// own data key and no memory, so that no plan gives it layers), heartbeats, assignment
    /// reports.
    func controlSeeds(_ rng: inout SplitMix) -> [[UInt8]] {
        var hello = Caravan_V1_Hello()
        hello.protocolVersion = 1
        hello.role = .worker
        hello.nodeID = "fuzz-node"
        var register = Caravan_V1_Register()
        register.workerID = "fuzz-worker"
        register.dataAddress = "tcp://127.0.0.1:1"
        register.dataPublicKey = hostileWorkerKey
        register.capabilities.cores = 1
        register.capabilities.totalMemoryBytes = 1 << 20
        register.capabilities.freeMemoryBytes = 0
        register.capabilities.measuredGflops = 0.001
        register.capabilities.models = [.with {
            $0.model = .with { $0.name = "m.gguf"; $0.sha256 = modelSHA256; $0.sizeBytes = modelSize; $0.layerCount = 30 }
        }]
        register.capabilities.activationDtypes = [.f32, .f16]
        var heartbeat = Caravan_V1_Heartbeat()
        heartbeat.senderID = "fuzz-worker"
        heartbeat.planEpoch = planEpoch
        heartbeat.sequence = rng.next() % 1000
        heartbeat.state = .ready
        heartbeat.freeMemoryBytes = 1 << 20
        heartbeat.recentStepMs = 12.5
        heartbeat.recentRowsPerStep = 3
        heartbeat.stepsRun = 10
        var ready = Caravan_V1_AssignmentReady()
        ready.planEpoch = planEpoch
        ready.workerID = "fuzz-worker"
        ready.ready = false
        ready.error = "fuzz"
        return [
            Self.envelope(.hello(hello)),
            Self.envelope(.register(register)),
            Self.envelope(.heartbeat(heartbeat)),
            Self.envelope(.assignmentReady(ready)),
        ]
    }

    /// The result socket, as the worker that runs the last stage: results with sampled tokens
    /// (and logprobs), with an error, and with logits and their payload.
    func resultSeeds(_ rng: inout SplitMix) -> [[[UInt8]]] {
        var sampled = Caravan_V1_StepResult()
        sampled.jobID = "job-fuzz"
        sampled.planEpoch = planEpoch
        sampled.stepID = UInt64(rng.below(64))
        sampled.tokens = (0..<1 + rng.below(4)).map { i in
            .with {
                $0.sequenceID = UInt64(i)
                $0.position = UInt32(rng.below(300))
                $0.tokenID = UInt32(rng.below(49_152))
                $0.logprob = -0.5
                $0.topLogprobs = [.with { $0.tokenID = 5; $0.logprob = -1 }]
            }
        }
        var failed = Caravan_V1_StepResult()
        failed.jobID = "job-fuzz"
        failed.planEpoch = planEpoch
        failed.stepID = UInt64(rng.below(64))
        failed.error = "fuzz"
        var logits = Caravan_V1_StepResult()
        logits.jobID = "job-fuzz"
        logits.planEpoch = planEpoch
        logits.stepID = UInt64(rng.below(64))
        logits.logitsRows = [.with { $0.sequenceID = 1; $0.position = 3; $0.sample = true }]
        let (header, payload) = Self.tensor(rows: 1, width: 64, &rng)
        logits.logits = header
        return [[Self.envelope(.stepResult(sampled))], [Self.envelope(.stepResult(failed))],
                [Self.envelope(.stepResult(logits)), payload]]
    }

    /// The model source, as a registered worker: model info and chunk requests.
    func modelSourceSeeds(_ rng: inout SplitMix) -> [[UInt8]] {
        [Self.envelope(.modelInfoRequest(.with { $0.sha256 = modelSHA256 }), requestID: 1),
         Self.envelope(.modelChunkRequest(.with {
             $0.sha256 = modelSHA256
             $0.offset = UInt64(rng.below(Int(modelSize)))
             $0.length = UInt32(1 + rng.below(1 << 16))
         }), requestID: 2)]
    }

    /// The first stage's data socket, as the coordinator: token rows of new and continued
    /// sequences (some sampling on the stage with their requests), and rows with an activation
    /// tensor (which a first stage refuses after decoding it).
    func dataSeeds(_ rng: inout SplitMix) -> [[[UInt8]]] {
        let rows = 1 + rng.below(6)
        let sequence = rng.next() % 1_000_000 + 1_000_000
        var tokens = Caravan_V1_ActivationHeader()
        tokens.jobID = "job-fuzz"
        tokens.planEpoch = planEpoch
        tokens.stepID = UInt64(rng.below(1000))
        tokens.sequences = (0..<rows).map { i in
            .with {
                $0.sequenceID = sequence
                $0.position = UInt32(i)
                $0.tokenID = UInt32(rng.below(49_152))
                $0.sample = i == rows - 1
                if i == rows - 1, rng.oneIn(2) {
                    $0.sampling = .with {
                        $0.temperature = 0.8
                        $0.topK = 40
                        $0.topP = 0.95
                        $0.minP = 0.05
                        $0.repeatPenalty = 1.1
                        $0.repeatLastN = 64
                        $0.seed = 3
                        $0.logprobs = true
                        $0.topLogprobs = 2
                        $0.history = [1, 2, 3]
                    }
                }
            }
        }
        var activations = tokens
        for i in activations.sequences.indices { activations.sequences[i].clearTokenID() }
        let (header, payload) = Self.tensor(rows: rows, width: 576, &rng)
        activations.tensor = header
        return [[Self.envelope(.activation(tokens))], [Self.envelope(.activation(activations)), payload]]
    }

    /// An F32 tensor `[rows, width]` whose values are often hostile (NaN, infinities, denormals),
    /// with a correct header and checksum.
    static func tensor(rows: Int, width: Int, _ rng: inout SplitMix) -> (Caravan_V1_TensorHeader, [UInt8]) {
        var payload = [UInt8]()
        payload.reserveCapacity(rows * width * 4)
        for _ in 0..<rows * width {
            let v = rng.oneIn(8) ? rng.hostileFloat() : Float(rng.below(200)) / 100 - 1
            withUnsafeBytes(of: v.bitPattern.littleEndian) { payload.append(contentsOf: $0) }
        }
        var header = Caravan_V1_TensorHeader()
        header.dtype = .f32
        header.shape = [UInt64(rows), UInt64(width)]
        header.byteLength = UInt64(payload.count)
        header.crc32C = CRC32C.checksum(payload)
        return (header, payload)
    }

    // MARK: Mutation

    /// A hostile message from `seed` (header frame, optional payload): the header mutated with
    /// the protobuf mutator, or the payload mutated (its checksum fixed half of the time, so the
    /// values reach the stage), a header whose tensor lies about its shape or byte count, or the
    /// frame count changed (empty frames, extra frames, no header).
    static func mutate(_ seed: [[UInt8]], _ rng: inout SplitMix) -> [[UInt8]] {
        var frames = seed
        switch rng.below(10) {
        case 0, 1, 2, 3:
            frames[0] = ProtobufMutator.mutate(frames[0], &rng)
        case 4:
            guard frames.count == 2 else { frames[0] = ProtobufMutator.mutate(frames[0], &rng); break }
            frames[1] = ByteMutator.mutate(frames[1], &rng)
            if rng.oneIn(2) { frames[0] = Self.fixingChecksum(frames[0], payload: frames[1]) }
        case 5:
            guard frames.count == 2 else { frames[0] = ByteMutator.mutate(frames[0], &rng); break }
            frames[0] = Self.lyingShape(frames[0], payloadBytes: frames[1].count, &rng)
        case 6:
            frames = rng.pick([[[]], [[], []], frames + [[]], frames + frames, [frames[0], [0xFF]], Array(frames.dropFirst())])
            if frames.isEmpty { frames = [[]] }
        case 7:
            frames[0] = ByteMutator.mutate(frames[0], &rng)
        default:
            // Several mutations stacked.
            frames[0] = ProtobufMutator.mutate(ProtobufMutator.mutate(frames[0], &rng), &rng)
        }
        return frames
    }

    /// `header` (an envelope with an activation or step result) with the tensor's checksum set to
    /// `payload`'s and its byte length and shape kept.
    static func fixingChecksum(_ header: [UInt8], payload: [UInt8]) -> [UInt8] {
        guard var envelope = try? Caravan_V1_Envelope(serializedBytes: header) else { return header }
        let crc = CRC32C.checksum(payload)
        switch envelope.body {
        case .activation(var a)?:
            a.tensor.crc32C = crc
            a.tensor.byteLength = UInt64(payload.count)
            envelope.body = .activation(a)
        case .stepResult(var r)?:
            r.logits.crc32C = crc
            r.logits.byteLength = UInt64(payload.count)
            envelope.body = .stepResult(r)
        default: return header
        }
        return (try? envelope.serializedBytes()) ?? header
    }

    /// `header` whose tensor shape and byte count disagree with each other or with the payload
    /// (dimensions that overflow, zero, an extra dimension, a byte count off by one or huge).
    static func lyingShape(_ header: [UInt8], payloadBytes: Int, _ rng: inout SplitMix) -> [UInt8] {
        guard var envelope = try? Caravan_V1_Envelope(serializedBytes: header) else { return header }
        func lie(_ t: inout Caravan_V1_TensorHeader) {
            switch rng.below(6) {
            case 0: t.shape = [UInt64.max, 2]
            case 1: t.shape = [1 << 32, 1 << 32]
            case 2: t.shape.append(1 + UInt64(rng.below(3)))
            case 3: t.shape = t.shape.map { _ in 0 }
            case 4: t.byteLength = UInt64(payloadBytes) + 1
            default: t.byteLength = rng.hostileUInt64()
            }
        }
        switch envelope.body {
        case .activation(var a)?:
            lie(&a.tensor)
            envelope.body = .activation(a)
        case .stepResult(var r)?:
            lie(&r.logits)
            envelope.body = .stepResult(r)
        default: return header
        }
        return (try? envelope.serializedBytes()) ?? header
    }
}
