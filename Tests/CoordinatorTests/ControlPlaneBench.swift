import CaravanCore
import CaravanTransport
import CaravanWire
import Fingerprint
import GGUF
import Logging
import Planning
import Tokenizer
@testable import Coordinator

/// A control plane for one expected worker of the model at a path, bound on an in-memory hub,
/// with its own job desk and an in-memory journal: what the tests of the plane drive by hand
/// (``ControlPlane/handle(_:)`` on each received message).
struct ControlPlaneBench {
    let hub: InMemoryHub
    let control: InMemoryTransport
    let facts: ModelFacts
    let fingerprint: ModelFingerprint
    let desk: JobDesk
    let membership: LockedValue<Membership>
    let plane: ControlPlane
    /// The serve orders the plane sends once a plan's stages are ready.
    let servings: AsyncStream<ServeOrder>

    /// A bench for the model at `path`; the plane logs to `logger`, the desk to `deskLogger`.
    init(modelPath path: String, codec: WireCodec, hubCapacity: Int = 1000, logger: Logger, deskLogger: Logger) throws {
        let file = try GGUFFile(path: path)
        facts = try ModelFacts(file: file)
        fingerprint = try ModelFingerprint.of(path: path)
        hub = InMemoryHub(capacity: hubCapacity)
        control = try hub.bind("mem://coordinator/control", node: "coordinator")
        desk = JobDesk(tokenizer: try Tokenizer(gguf: file), template: nil, contextLimit: 256, logger: deskLogger,
                       journal: InMemoryJobJournal(), policy: JobDeskPolicy(queueTimeout: .seconds(30)),
                       outbox: ClientOutbox(limit: 100, logger: deskLogger))
        let config = CoordinatorConfiguration(modelPath: path, controlEndpoint: "mem://coordinator/control",
                                              clientsEndpoint: "mem://coordinator/clients", expectedWorkers: 1,
                                              activationDType: .f32, contextTokens: 256)
        membership = LockedValue(Membership(expectedWorkers: 1, modelSHA256: fingerprint.sha256, heartbeatTimeout: 2000,
                                            suspectAfter: 500, joinSettle: 0, lastEpoch: 0))
        let template = AssignmentTemplate(
            modelName: fingerprint.name, modelSHA256: fingerprint.sha256, modelSize: fingerprint.size,
            modelLayerCount: facts.layerCount, resultAddress: "mem://coordinator/results", activationDType: .f32,
            maxContextTokens: 256, maxBatchSequences: 8, maxBatchTokens: 128)
        let serve: AsyncStream<ServeOrder>.Continuation
        (servings, serve) = AsyncStream.makeStream(of: ServeOrder.self)
        plane = ControlPlane(control: control, codec: codec, membership: membership, facts: facts, template: template,
                             configuration: config, logger: logger, desk: desk, serve: serve)
    }
}
