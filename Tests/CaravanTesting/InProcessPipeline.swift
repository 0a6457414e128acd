import CaravanCore
import CaravanTransport
import CaravanWire
import Fingerprint
import Coordinator
import Foundation
import GGUF
import Logging
import Planning
import Worker

/// A pipeline of real ``StageRuntime``s in this process, driven by a real ``RemotePipelineEngine``
/// over an ``InMemoryHub``: the data path of a cluster (step out to the first stage, activations
/// from stage to stage, the outcome back to the result endpoint) without the control plane. Use it
/// wherever a test needs "what the workers compute" (it is exactly their code).
public final class InProcessPipeline: Sendable {
    /// One result message that came back to the result endpoint.
    public struct ResultMessage: Sendable, Equatable {
        /// Bytes of all its frames.
        public let bytes: Int
        /// Whether it carried sampled tokens (rather than logits).
        public let sampled: Bool
    }

    /// The hub the links run on.
    public let hub: InMemoryHub
    /// The coordinator's side: steps in, outputs out.
    public let engine: RemotePipelineEngine
    /// The stages, first to last.
    public let runtimes: [StageRuntime]
    /// Every result message so far, in arrival order.
    public var results: [ResultMessage] { received.withLock { $0 } }
    private let received = LockedValue<[ResultMessage]>([])
    private let tasks: LockedValue<[Task<Void, Never>]>
    private let resultsLink: any Transport

    /// Stages over `modelPath` split at `boundaries` (e.g. `[3]` for layers [0, 3) and [3, n)) for
    /// plan `epoch`, activations crossing as `activationDType`.
    public init(modelPath: String, boundaries: [Int] = [], epoch: UInt64 = 1, contextLimit: Int = 256,
                activationDType: TensorDType = .f32, logger: Logger = Logger(label: "pipeline") { _ in SwiftLogNoOpLogHandler() })
        async throws {
        let file = try GGUFFile(path: modelPath)
        let facts = try ModelFacts(file: file)
        let layerCount = facts.layerCount
        let fingerprint = try ModelFingerprint.of(path: modelPath)
        let edges = [0] + boundaries + [layerCount]
        let hub = InMemoryHub()
        self.hub = hub
        let codec = WireCodec()
        let resultsEndpoint = "mem://coordinator/results"
        resultsLink = try hub.bind(resultsEndpoint, node: "coordinator")
        var runtimes: [StageRuntime] = []
        var links: [(any Transport, StageRuntime)] = []
        for i in 0..<(edges.count - 1) {
            let node = "worker-\(i + 1)"
            let runtime = StageRuntime(dialer: hub.dialer(node: node), codec: codec, threads: 1, sendTimeout: .seconds(5),
                                       logger: logger)
            let last = i == edges.count - 2
            let assignment = StageAssignment(
                planEpoch: epoch, modelName: fingerprint.name, modelSHA256: fingerprint.sha256, modelSize: fingerprint.size,
                modelLayerCount: layerCount, layers: LayerRange(edges[i], edges[i + 1])!, stageIndex: i,
                stageCount: edges.count - 1, nextHop: last ? resultsEndpoint : "mem://worker-\(i + 2)/data",
                resultAddress: resultsEndpoint, activationDType: activationDType, maxContextTokens: contextLimit,
                maxBatchSequences: 8, maxBatchTokens: 512)
            links.append((try hub.bind("mem://\(node)/data", node: node), runtime))
            _ = try await runtime.load(assignment, path: modelPath)
            runtimes.append(runtime)
        }
        self.runtimes = runtimes
        let stages = runtimes
        engine = RemotePipelineEngine(
            firstStage: hub.connect("mem://worker-1/data", node: "coordinator"), planEpoch: epoch,
            vocabularySize: facts.vocabularySize, contextLimit: contextLimit, codec: codec, deadline: .seconds(30),
            releaser: { ids in for stage in stages { await stage.release(ids, epoch: epoch) } })
        var tasks: [Task<Void, Never>] = links.map { link, runtime in
            Task {
                while let message = try? await link.receive() { await runtime.handle(frames: message.frames) }
            }
        }
        let (engine, received, resultsLink) = (engine, received, resultsLink)
        tasks.append(Task {
            while let message = try? await resultsLink.receive() {
                guard case .stepResult(let outcome, _)? = try? codec.decode(message.frames) else { continue }
                received.withLock {
                    $0.append(ResultMessage(bytes: message.frames.reduce(0) { $0 + $1.count }, sampled: !outcome.tokens.isEmpty))
                }
                engine.deliver(outcome)
            }
        })
        self.tasks = LockedValue(tasks)
    }

    deinit {
        for task in tasks.withLock({ $0 }) { task.cancel() }
    }

    /// Stops the stages and closes the links.
    public func close() async {
        for task in tasks.withLock({ $0 }) { task.cancel() }
        for runtime in runtimes { await runtime.shutdown() }
        await resultsLink.close()
    }
}
