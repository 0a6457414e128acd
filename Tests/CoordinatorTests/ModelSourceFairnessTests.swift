import CaravanWire
import CaravanCore
import Fingerprint
import Coordinator
import Foundation
import GGUF
import Logging
import TestSupport
import XCTest
import ZeroMQ

/// Several workers pulling at once share the coordinator's model source in turn: a worker that
/// queued all its requests first does not get all its chunks before one that queued later.
final class ModelSourceFairnessTests: XCTestCase {
    func testPullersAreServedRoundRobinNotFirstComeFirstServed() async throws {
        let path = try TestModel.requirePath()
        let file = try GGUFFile(path: path)
        let sha = String(repeating: "a", count: 64)
        let context = try Context()
        let loop = try EventLoop(context: context, name: "fairness-test")
        defer {
            loop.shutdown()
            context.terminate()
        }
        let codec = WireCodec()
        let server = try await ModelServer(loop: loop, endpoint: "tcp://127.0.0.1:*", security: .plain, file: file,
                                           fingerprint: ModelFingerprint(name: "m.gguf", sha256: sha, size: UInt64(file.fileSize)),
                                           layerCount: 30, codec: codec, logger: Logger(label: "fairness-test"))
        let count = 48
        let chunk: UInt32 = 256 << 10
        func client() throws -> AsyncSocket {
            try AsyncSocket(loop: loop, type: .dealer) { s in
                try s.set(.maxMessageSize, Int64(FrameLimits.modelChunks(codec.limits, maxChunkBytes: Int(chunk))))
                try s.connect(server.address)
            }
        }
        let a = try client()
        let b = try client()
        // Both queue every request before the source starts serving: a first, then b.
        for (socket, base) in [(a, UInt64(0)), (b, UInt64(count) * UInt64(chunk))] {
            for i in 0..<count {
                try await socket.send(try codec.encode(.modelChunkRequest(.with {
                    $0.sha256 = sha
                    $0.offset = base + UInt64(i) * UInt64(chunk)
                    $0.length = chunk
                }), requestID: UInt64(i + 1)), timeout: .seconds(5))
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        let serving = Task { await server.run() }
        defer { serving.cancel() }
        let arrivals = LockedValue<[String]>([])
        func drain(_ socket: AsyncSocket, _ name: String) async throws {
            for _ in 0..<count {
                guard case .modelChunk(let c, _) = try codec.decode(try await socket.receive(timeout: .seconds(20))) else {
                    return XCTFail("\(name): expected a chunk")
                }
                XCTAssertEqual(c.count, Int(chunk))
                arrivals.withLock { $0.append(name) }
            }
        }
        async let da: Void = drain(a, "a")
        async let db: Void = drain(b, "b")
        _ = try await (da, db)
        let order = arrivals.withLock { $0 }
        XCTAssertEqual(order.count, 2 * count)
        // First come, first served would give b nothing before a's last chunk.
        let aDone = try XCTUnwrap(order.lastIndex(of: "a"))
        let bBeforeADone = order[..<aDone].filter { $0 == "b" }.count
        XCTAssertGreaterThanOrEqual(bBeforeADone, count / 2, "b was served alongside a: \(order.joined())")
        let bDone = try XCTUnwrap(order.lastIndex(of: "b"))
        XCTAssertGreaterThanOrEqual(order[..<bDone].filter { $0 == "a" }.count, count / 2, order.joined())
        await a.close()
        await b.close()
        await server.close()
    }
}
