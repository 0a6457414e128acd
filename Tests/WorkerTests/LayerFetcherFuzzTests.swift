import CaravanCore
import CaravanTesting
import CaravanWire
import CaravanTransport
import Fingerprint
import Foundation
import GGUF
import Logging
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// The worker's ``LayerFetcher`` against a hostile model source: a real ROUTER socket with CURVE,
/// as the coordinator's, serving the model file but answering with mutated `ModelInfo`s (chunk
/// size 0 or 1, the tensor data outside the file, another model) and mutated chunks (wrong
/// offsets, lengths and CRCs, truncated, oversized, duplicated, out of order, another model's,
/// refused, lost, mutated headers, stray replies). Each case ends, within a few seconds, with the
/// stage's bytes in the cache exactly the model's or a ``LayerFetchError``; nothing traps, nothing
/// is written outside the case's cache directory, and memory stays flat.
final class LayerFetcherFuzzTests: XCTestCase {
    static let model = Result { try TinyModel().write() }

    /// What the source does to its answers in one case.
    private struct Hostility: Sendable {
        /// The model info answer: `nil` = the true one.
        var info: InfoFault?
        /// Chance in 1,000 that a chunk answer is spoiled.
        var chunkFaultPerMille = 0
        /// Unrelated replies after each answer.
        var chatter = 0
    }

    private enum InfoFault: CaseIterable, Sendable {
        case zeroChunk, oneByteChunks, dataOffsetZero, dataOffsetPastEnd, hugeDataOffset, otherModel, refused, silent
    }

    private enum ChunkFault: CaseIterable {
        case wrongOffset, shortPayload, longPayload, badChecksum, truncatedPayload, headerOnly, oversized, duplicate,
             outOfOrder, unknownRequest, refused, lost, otherModel, mutatedHeader, extraFrame
    }

    /// A model source on a CURVE ROUTER socket, spoiling answers as the case's generator says.
    private final class HostileSource: @unchecked Sendable {
        let socket: AsyncSocket
        let bytes: [UInt8]
        let sha: String
        let dataOffset: UInt64
        let hostility: Hostility
        private var rng: SplitMix
        private var heldBack: [Message]?
        private let codec = WireCodec()

        init(loop: EventLoop, keys: CurveKeyPair, bytes: [UInt8], sha: String, dataOffset: UInt64, hostility: Hostility,
             seed: UInt64) async throws {
            socket = try AsyncSocket(loop: loop, type: .router) { s in
                try s.apply(ClusterSecurity.curve(keys).server)
                try s.set(.linger, 0)
                try s.bind("tcp://127.0.0.1:*")
            }
            self.bytes = bytes
            self.sha = sha
            self.dataOffset = dataOffset
            self.hostility = hostility
            rng = SplitMix(seed: seed)
        }

        var address: String {
            get async throws { try await socket.withSocket { s throws(ZMQError) in try s.lastEndpoint } }
        }

        private func send(_ peer: Message, _ frames: [Message]) async {
            guard !frames.isEmpty else { return }
            try? await socket.send([peer] + frames, timeout: .seconds(1))
        }

        private func encode(_ body: Caravan_V1_Envelope.OneOf_Body, _ id: UInt64) -> [Message] {
            (try? codec.encode(body, requestID: id)) ?? []
        }

        private func chunk(offset: UInt64, _ payload: [UInt8], sha: String? = nil, id: UInt64) -> [Message] {
            (try? codec.encode(ModelChunkData(sha256: sha ?? self.sha, offset: offset, payload: Message(payload)), requestID: id)) ?? []
        }

        func run() async {
            while let frames = try? await socket.receive(), frames.count >= 2 {
                let peer = frames[0]
                guard case .message(let body, let id)? = try? codec.decode(Array(frames.dropFirst())) else { continue }
                switch body {
                case .modelInfoRequest: await answerInfo(peer, id)
                case .modelChunkRequest(let r): await answerChunk(peer, r, id)
                default: continue
                }
                for _ in 0..<hostility.chatter {
                    await send(peer, rng.oneIn(2) ? encode(.heartbeat(.with { $0.senderID = "x" }), 0)
                                                  : chunk(offset: 0, [1, 2, 3], id: 900_000 + rng.next() % 1000))
                }
            }
        }

        private func answerInfo(_ peer: Message, _ id: UInt64) async {
            var info = Caravan_V1_ModelInfo()
            info.model.sha256 = sha
            info.model.sizeBytes = UInt64(bytes.count)
            info.model.name = "tiny.gguf"
            info.dataOffset = dataOffset
            info.maxChunkBytes = 4096
            switch hostility.info {
            case nil: break
            case .zeroChunk?: info.maxChunkBytes = 0
            case .oneByteChunks?: info.maxChunkBytes = 1
            case .dataOffsetZero?: info.dataOffset = 0
            case .dataOffsetPastEnd?: info.dataOffset = UInt64(bytes.count) + 1
            case .hugeDataOffset?: info.dataOffset = rng.hostileUInt64() | 1 << 40
            case .otherModel?: info.model.sha256 = String(repeating: "e", count: 64)
            case .refused?: return await send(peer, encode(.error(.with { $0.code = "not_found"; $0.message = "no" }), id))
            case .silent?: return
            }
            // Built by hand: the codec would not encode a model info it would not accept.
            var envelope = Caravan_V1_Envelope()
            envelope.protocolVersion = WireProtocol.version
            envelope.requestID = id
            envelope.body = .modelInfo(info)
            guard let bytes: [UInt8] = try? envelope.serializedBytes() else { return }
            await send(peer, [Message(bytes)])
        }

        private func answerChunk(_ peer: Message, _ r: Caravan_V1_ModelChunkRequest, _ id: UInt64) async {
            guard r.offset < UInt64(bytes.count), r.length > 0 else { return }
            let end = min(UInt64(bytes.count), r.offset + UInt64(r.length))
            let data = Array(bytes[Int(r.offset)..<Int(end)])
            let honest = chunk(offset: r.offset, data, id: id)
            guard rng.below(1000) < hostility.chunkFaultPerMille else {
                await send(peer, honest)
                if let held = heldBack {
                    heldBack = nil
                    await send(peer, held)
                }
                return
            }
            switch rng.pick(ChunkFault.allCases) {
            case .wrongOffset:
                await send(peer, chunk(offset: rng.oneIn(2) ? r.offset + 1 + rng.next() % 4096 : rng.hostileUInt64() % (1 << 62), data, id: id))
            case .shortPayload:
                await send(peer, chunk(offset: r.offset, Array(data.dropLast(1 + rng.below(max(1, data.count - 1)))), id: id))
            case .longPayload:
                await send(peer, chunk(offset: r.offset, data + [UInt8](repeating: 7, count: 1 + rng.below(8192)), id: id))
            case .badChecksum:
                var frames = honest
                var payload = data
                payload[rng.below(payload.count)] ^= UInt8(1 + rng.below(255))
                frames[1] = Message(payload)
                await send(peer, frames)
            case .truncatedPayload:
                var frames = honest
                frames[1] = Message(Array(data.prefix(rng.below(data.count))))
                await send(peer, frames)
            case .headerOnly:
                await send(peer, [honest[0]])
            case .oversized:
                // Past the fetcher's ZMQ_MAXMSGSIZE: libzmq drops the connection (which reconnects).
                await send(peer, [honest[0], Message([UInt8](repeating: 0, count: 2 << 20))])
            case .duplicate:
                await send(peer, honest)
                await send(peer, honest)
            case .outOfOrder:
                if let held = heldBack { await send(peer, held) }
                heldBack = honest
            case .unknownRequest:
                await send(peer, chunk(offset: r.offset, data, id: id &+ 1 + rng.next() % 64))
            case .refused:
                await send(peer, encode(.error(.with { $0.code = "busy"; $0.message = "later" }), id))
            case .lost:
                return
            case .otherModel:
                await send(peer, chunk(offset: r.offset, data, sha: String(repeating: "d", count: 64), id: id))
            case .mutatedHeader:
                var frames = honest
                frames[0] = Message(ProtobufMutator.mutate(honest[0].bytes, &rng))
                await send(peer, frames)
            case .extraFrame:
                await send(peer, honest + [Message([1, 2, 3])])
            }
        }

        func close() async { await socket.close() }
    }

    private struct Failed: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs `body` but gives up (throwing) after `limit`.
    private func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw Failed(description: "no end within \(limit)") }
            return value
        }
    }

    private static func settings() -> LayerFetcher.Settings {
        var s = LayerFetcher.Settings()
        s.blockSize = 4096
        s.window = 4
        s.requestTimeout = .milliseconds(150)
        s.maxAttempts = 3
        s.pruneUnusedAfter = nil
        s.logInterval = .seconds(60)
        return s
    }

    func testHostileModelSourceAnswersEndInTheModelsBytesOrATypedError() async throws {
        let path = try Self.model.get()
        let file = try GGUFFile(path: path)
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let layerCount = TinyModel().layers
        let sha = String(repeating: "5", count: 64)
        let context = try Context()
        let loop = try EventLoop(context: context, name: "fetch-fuzz")
        defer {
            loop.shutdown()
            context.terminate()
        }
        let serverKeys = try CurveKeyPair.generate()
        let clientKeys = try CurveKeyPair.generate()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("fetch-fuzz-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let run = FuzzRun(short: 30, salt: 0x1A7E)
        let rssBefore = residentBytes(pid: getpid()) ?? 0
        var outcomes: [String: Int] = [:]
        for index in run.cases {
            var rng = SplitMix(seed: run.seed(ofCase: index))
            var hostility = Hostility()
            // The first cases try each kind of bad model info once; then one case in four has one.
            hostility.chunkFaultPerMille = rng.pick([0, 30, 150, 400, 1000])
            if index < InfoFault.allCases.count {
                hostility.info = InfoFault.allCases[index]
                hostility.chunkFaultPerMille = 0
            } else if rng.oneIn(4) {
                hostility.info = rng.pick(InfoFault.allCases)
            }
            if rng.oneIn(6) { hostility.chatter = 1 + rng.below(4) }
            let start = rng.below(layerCount)
            let layers = LayerRange(start, start + 1 + rng.below(layerCount - start))!
            let source = try await HostileSource(loop: loop, keys: serverKeys, bytes: original, sha: sha,
                                                 dataOffset: UInt64(file.dataOffset), hostility: hostility, seed: rng.next())
            let address = try await source.address
            let server = Task { await source.run() }
            let cache = root + "/case-\(index)"
            var settings = Self.settings()
            settings.connections = 1 + rng.below(2)
            let fetcher = LayerFetcher(loop: loop, codec: WireCodec(), security: .curve(clientKeys),
                                       coordinatorPublicKey: serverKeys.publicKey, cacheDirectory: cache, settings: settings,
                                       logger: Logger(label: "fetch-fuzz") { _ in SwiftLogNoOpLogHandler() })
            let assignment = StageAssignment(
                planEpoch: 1, modelName: "tiny.gguf", modelSHA256: sha, modelSize: UInt64(original.count), modelLayerCount: layerCount,
                layers: layers, stageIndex: 0, stageCount: 1, nextHop: "tcp://127.0.0.1:1", resultAddress: "tcp://127.0.0.1:1",
                activationDType: .f32, maxContextTokens: 16, maxBatchSequences: 1, maxBatchTokens: 16)
            let name = "case \(index) (seed \(run.seed(ofCase: index)); CARAVAN_FUZZ_CASE=\(index)), \(hostility)"
            let outcome: Result<LayerFetcher.Report, LayerFetchError>
            do {
                outcome = try await within(.seconds(15)) { () async throws -> Result<LayerFetcher.Report, LayerFetchError> in
                    do throws(LayerFetchError) {
                        return .success(try await fetcher.fetch(assignment, source: address))
                    } catch {
                        return .failure(error)
                    }
                }
            } catch {
                server.cancel()
                await source.close()
                return XCTFail("\(name): \(error)")
            }
            server.cancel()
            await source.close()
            switch outcome {
            case .success(let report):
                outcomes["pulled", default: 0] += 1
                // Every byte the stage reads is the model's.
                let copy = Array(try Data(contentsOf: URL(fileURLWithPath: report.path)))
                XCTAssertEqual(copy.count, original.count, name)
                for range in StageByteRanges.ranges(file: file, layers: layers, layerCount: layerCount) {
                    let r = Int(range.lowerBound)..<Int(range.upperBound)
                    XCTAssertTrue(copy[r].elementsEqual(original[r]), "\(name): bytes \(range) differ")
                }
            case .failure(let error):
                outcomes["refused: " + error.description.prefix { !$0.isNumber }.prefix(50), default: 0] += 1
            }
            // Nothing outside the case's cache directory, and in it only the model's cache files.
            let cases = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            XCTAssertTrue(cases.allSatisfy { $0 == "case-\(index)" }, "\(name): \(cases)")
            let files = (try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []
            XCTAssertTrue(files.allSatisfy { $0.hasPrefix(sha) }, "\(name): \(files)")
            try? FileManager.default.removeItem(atPath: cache)
        }
        let grown = (residentBytes(pid: getpid()) ?? 0) - rssBefore
        XCTAssertLessThan(grown, 64 << 20, "resident memory grew by \(grown >> 20) MiB")
        if !run.isLong, run.cases.count > 1 {
            XCTAssertGreaterThan(outcomes["pulled"] ?? 0, 5, "\(outcomes)")
            XCTAssertGreaterThan(outcomes.count, 3, "several kinds of refusal: \(outcomes)")
        }
        print("layer fetcher fuzz: \(run.cases.count) cases: \(outcomes.sorted { $0.key < $1.key })")
    }

    /// A source that answers every chunk request with a stream of replies that answer nothing: the
    /// requests in flight still count as lost after the request timeout, and the pull fails after
    /// its attempts instead of waiting as long as the stream goes on. (Before, each stray reply
    /// restarted the wait: the pull never ended.)
    func testStrayRepliesDoNotKeepAPullWaiting() async throws {
        let path = try Self.model.get()
        let file = try GGUFFile(path: path)
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let sha = String(repeating: "6", count: 64)
        let context = try Context()
        let loop = try EventLoop(context: context, name: "fetch-stray")
        defer {
            loop.shutdown()
            context.terminate()
        }
        let serverKeys = try CurveKeyPair.generate()
        let clientKeys = try CurveKeyPair.generate()
        let socket = try AsyncSocket(loop: loop, type: .router) { s in
            try s.apply(ClusterSecurity.curve(serverKeys).server)
            try s.set(.linger, 0)
            try s.bind("tcp://127.0.0.1:*")
        }
        let address = try await socket.withSocket { s throws(ZMQError) in try s.lastEndpoint }
        let codec = WireCodec()
        let server = Task {
            await withDiscardingTaskGroup { group in
                while let frames = try? await socket.receive(), frames.count >= 2 {
                    let peer = frames[0]
                    guard case .message(let body, let id)? = try? codec.decode(Array(frames.dropFirst())) else { continue }
                    if case .modelInfoRequest = body {
                        var info = Caravan_V1_ModelInfo()
                        info.model.sha256 = sha
                        info.model.sizeBytes = UInt64(original.count)
                        info.dataOffset = UInt64(file.dataOffset)
                        info.maxChunkBytes = 4096
                        try? await socket.send([peer] + (try codec.encode(.modelInfo(info), requestID: id)), timeout: .seconds(1))
                    } else {
                        group.addTask {
                            let stray = (try? codec.encode(.heartbeat(.with { $0.senderID = "x" }))) ?? []
                            while !Task.isCancelled {
                                guard (try? await socket.send([peer] + stray, timeout: .seconds(1))) != nil else { return }
                                try? await Task.sleep(for: .milliseconds(20))
                            }
                        }
                    }
                }
            }
        }
        defer { server.cancel() }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("fetch-stray-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let fetcher = LayerFetcher(loop: loop, codec: WireCodec(), security: .curve(clientKeys), coordinatorPublicKey: serverKeys.publicKey,
                                   cacheDirectory: cache, settings: Self.settings(),
                                   logger: Logger(label: "fetch-stray") { _ in SwiftLogNoOpLogHandler() })
        let assignment = StageAssignment(
            planEpoch: 1, modelName: "tiny.gguf", modelSHA256: sha, modelSize: UInt64(original.count), modelLayerCount: TinyModel().layers,
            layers: LayerRange(0, 2)!, stageIndex: 0, stageCount: 1, nextHop: "tcp://127.0.0.1:1", resultAddress: "tcp://127.0.0.1:1",
            activationDType: .f32, maxContextTokens: 16, maxBatchSequences: 1, maxBatchTokens: 16)
        let started = ContinuousClock.now
        let outcome = try await within(.seconds(10)) { () async throws -> String? in
            do throws(LayerFetchError) {
                _ = try await fetcher.fetch(assignment, source: address)
                return nil
            } catch {
                return error.description
            }
        }
        XCTAssertNotNil(outcome, "the pull cannot succeed")
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "it ends after its attempts: \(outcome ?? "")")
        server.cancel()
        await socket.close()
    }
}
