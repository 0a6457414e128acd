import CaravanCore
import CaravanTesting
import CaravanTransport
import CaravanWire
import Fingerprint
import Foundation
import GGUF
import Llama
import Logging
import Planning
import TestSupport
import Tokenizer
import XCTest
import ZeroMQ
@testable import Coordinator

/// A peer that sends thousands of bad messages makes the coordinator write a bounded number of
/// log lines (``LogLimiter``): garbage and refused messages on the client socket, garbage, data
/// messages, wrong message kinds and a hello storm on the control socket. (Before, every one of
/// them wrote a line.)
final class LogFloodTests: XCTestCase {
    static let model = Result { try TinyModel().write() }
    let codec = WireCodec()
    /// Bad messages of each kind.
    let flood = 2_000

    private func lines(_ recorder: LogRecorder) -> Int { recorder.text.split(separator: "\n").count }

    func testAClientSocketFloodWritesABoundedNumberOfLines() async throws {
        let recorder = LogRecorder()
        let logger = recorder.logger("coordinator")
        let hub = InMemoryHub(capacity: 10_000)
        let link = try hub.bind("mem://coordinator/clients", node: "coordinator")
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: try Self.model.get()))
        let outbox = ClientOutbox(limit: 100_000, logger: logger)
        let desk = JobDesk(tokenizer: tokenizer, template: nil, contextLimit: 256, logger: logger, journal: InMemoryJobJournal(),
                           policy: JobDeskPolicy(queueTimeout: .seconds(30)), outbox: outbox)
        let keys = try (0..<2).map { _ in try CurveKeyPair.generate().publicKey }
        let clientsFile = try TempFiles.write(Array((keys[0] + "\n").utf8), name: "authorized_clients")
        let access = try AccessList(files: .init(clients: clientsFile), openClients: false)
        let endpoint = ClientEndpoint(link: link, codec: codec, desk: desk, outbox: outbox, access: access, logger: logger)
        let client = hub.connect("mem://coordinator/clients", node: "client", identity: keys[0])
        let stranger = hub.connect("mem://coordinator/clients", node: "stranger", identity: keys[1])
        for i in 0..<flood {
            try await client.send([Message([0xFF, 0xFE, UInt8(i & 0xFF)])], timeout: .seconds(1))
            await endpoint.handle(try await link.receive(within: .seconds(5)))
            try await stranger.send(try codec.encode(.jobStatusRequest(.with { $0.jobID = "job-\(i)" })), timeout: .seconds(1))
            await endpoint.handle(try await link.receive(within: .seconds(5)))
            try await client.send(try codec.encode(.drainRequest(.with { $0.workerID = "w\(i)" })), timeout: .seconds(1))
            await endpoint.handle(try await link.receive(within: .seconds(5)))
        }
        let written = lines(recorder)
        XCTAssertLessThanOrEqual(written, 3 * 20, "\(3 * flood) bad messages: \(written) lines\n\(recorder.text.prefix(2000))")
        XCTAssertTrue(recorder.contains("client socket: dropped a bad frame"), "the first ones are written")
        XCTAssertTrue(recorder.contains("client socket: refused a message from a key that is neither client nor admin"))
    }

    func testAControlSocketFloodWritesABoundedNumberOfLines() async throws {
        let path = try Self.model.get()
        let recorder = LogRecorder()
        let bench = try ControlPlaneBench(modelPath: path, codec: codec, hubCapacity: 10_000, logger: recorder.logger("coordinator"),
                                          deskLogger: Logger(label: "desk") { _ in SwiftLogNoOpLogHandler() })
        let (hub, control, plane) = (bench.hub, bench.control, bench.plane)
        let peer = hub.connect("mem://coordinator/control", node: "peer")
        let step = try codec.encode(ActivationStep(tokens: StageBatch(entries: [StageEntry(sequence: SequenceID(1), position: 0, token: 1)]),
                                                   pipelineLabel: "x", planEpoch: 1, stepID: 1))
        let messages: [[Message]] = [
            [Message([0x01, 0x02])], step, try codec.encode(.jobCancel(.with { $0.jobID = "job-1" })),
            try codec.encode(.hello(.with { $0.role = .worker; $0.nodeID = "storm"; $0.protocolVersion = WireProtocol.version })),
        ]
        for _ in 0..<flood {
            for m in messages {
                try await peer.send(m, timeout: .seconds(1))
                await plane.handle(try await control.receive(within: .seconds(5)))
            }
        }
        let written = lines(recorder)
        XCTAssertLessThanOrEqual(written, messages.count * 20, "\(messages.count * flood) messages: \(written) lines\n\(recorder.text.prefix(2000))")
        XCTAssertTrue(recorder.contains("control socket: dropped a bad frame"))
    }
}
