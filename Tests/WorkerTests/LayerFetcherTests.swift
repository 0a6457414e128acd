import CaravanCore
import CaravanWire
import Foundation
import GGUF
import Llama
import Logging
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// The fetcher against a misbehaving in-process model source serving the real model file: a
/// corrupted chunk, a chunk at the wrong offset, a lost reply and a refusal are all retried, the
/// cache ends up byte-identical to the model where the stage reads, and a second fetch downloads
/// nothing.
final class LayerFetcherTests: XCTestCase {
    /// Serves `file` like the coordinator, but spoils the first answer to a few chunk requests.
    private final class FaultySource: @unchecked Sendable {
        let socket: AsyncSocket
        let file: GGUFFile
        let sha: String
        private let lock = NSLock()
        private var spoiled: Set<String> = []
        private(set) var chunksServed = 0
        /// Blocks whose first request gets no answer, and an answer at the wrong offset.
        let lostBlock: UInt64
        let misplacedBlock: UInt64
        /// When false, no chunk request is ever answered.
        var answersChunks = true

        init(loop: EventLoop, file: GGUFFile, sha: String, lostBlock: UInt64, misplacedBlock: UInt64) throws {
            self.lostBlock = lostBlock
            self.misplacedBlock = misplacedBlock
            socket = try AsyncSocket(loop: loop, type: .router) { s in try s.bind("tcp://127.0.0.1:*") }
            self.file = file
            self.sha = sha
        }

        /// True the first time `fault` is asked for.
        private func once(_ fault: String) -> Bool {
            lock.withLock { spoiled.insert(fault).inserted }
        }

        func run() async {
            let codec = WireCodec()
            while let frames = try? await socket.receive(), frames.count >= 2 {
                let peer = frames[0]
                guard case .message(let body, let id)? = try? codec.decode(Array(frames.dropFirst())) else { continue }
                var reply: [Message] = []
                switch body {
                case .modelInfoRequest:
                    var info = Caravan_V1_ModelInfo()
                    info.model.sha256 = sha
                    info.model.sizeBytes = UInt64(file.fileSize)
                    info.model.name = "m.gguf"
                    info.dataOffset = UInt64(file.dataOffset)
                    info.maxChunkBytes = 1 << 20
                    reply = (try? codec.encode(.modelInfo(info), requestID: id)) ?? []
                case .modelChunkRequest(let r):
                    guard answersChunks else { continue }
                    let block = r.offset >> 20
                    guard let bytes = file.fileBytes(offset: Int(r.offset), count: Int(r.length)) else { continue }
                    var data = Array(bytes)
                    if block == lostBlock, once("lost") { continue }  // no answer at all
                    if block == 1, once("refused") {
                        reply = (try? codec.encode(.error(.with { $0.code = "busy"; $0.message = "try again" }), requestID: id)) ?? []
                        break
                    }
                    var offset = r.offset
                    if block == misplacedBlock, once("offset") { offset += 1 }
                    guard var frames = try? codec.encode(ModelChunkData(sha256: sha, offset: offset, payload: Message(data)), requestID: id) else { continue }
                    if block == 0, once("corrupt") {  // the bytes change after the checksum was computed
                        data[17] ^= 0xFF
                        frames[1] = Message(data)
                    }
                    reply = frames
                    lock.withLock { chunksServed += 1 }
                default:
                    continue
                }
                try? await socket.send([peer] + reply, timeout: .seconds(5))
            }
        }
    }

    func testFetchRecoversFromBadAndLostChunksThenReusesTheCache() async throws {
        let path = try TestModel.requirePath()
        let file = try GGUFFile(path: path)
        let sha = String(repeating: "5", count: 64)
        let context = try Context()
        let loop = try EventLoop(context: context, name: "fetch-test")
        defer {
            loop.shutdown()
            context.terminate()
        }
        let layers = LayerRange(3, 6)!
        // Blocks 0 and 1 hold the header (corrupted, then refused once); two of the stage's blocks
        // are lost and misplaced once.
        let stageBlocks = StageByteRanges.blocks(covering: StageByteRanges.ranges(file: file, layers: layers, layerCount: 30),
                                                 blockSize: 1 << 20, fileSize: UInt64(file.fileSize)).filter { $0 > 1 }
        XCTAssertGreaterThan(stageBlocks.count, 5)
        let source = try FaultySource(loop: loop, file: file, sha: sha, lostBlock: UInt64(stageBlocks[1]),
                                      misplacedBlock: UInt64(stageBlocks[4]))
        let address = try await source.socket.withSocket { s throws(ZMQError) in try s.lastEndpoint }
        let server = Task { await source.run() }
        defer { server.cancel() }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("fetch-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: cache) }

        var settings = LayerFetcher.Settings()
        settings.requestTimeout = .milliseconds(500)
        let fetcher = LayerFetcher(loop: loop, codec: WireCodec(), security: .plain, coordinatorPublicKey: "",
                                   cacheDirectory: cache, settings: settings, logger: Logger(label: "fetch-test"))
        let assignment = StageAssignment(
            planEpoch: 1, modelName: "m.gguf", modelSHA256: sha, modelSize: UInt64(file.fileSize), modelLayerCount: 30,
            layers: layers, stageIndex: 1, stageCount: 3, nextHop: "tcp://127.0.0.1:1", resultAddress: "tcp://127.0.0.1:2",
            activationDType: .f32, maxContextTokens: 16, maxBatchSequences: 1, maxBatchTokens: 16)

        let report = try await fetcher.fetch(assignment, source: address)
        XCTAssertGreaterThanOrEqual(report.retries, 4, "corrupt, refused, wrong-offset and lost chunks are asked again")
        XCTAssertGreaterThan(report.downloadedBytes, 0)
        XCTAssertEqual(report.reusedBytes, 0)
        // Every byte the stage reads is the model's.
        let copy = try GGUFFile(path: report.path)
        for range in StageByteRanges.ranges(file: file, layers: layers, layerCount: 30) {
            let a = try XCTUnwrap(file.fileBytes(offset: Int(range.lowerBound), count: range.count))
            let b = try XCTUnwrap(copy.fileBytes(offset: Int(range.lowerBound), count: range.count))
            XCTAssertTrue(a.elementsEqual(b), "bytes \(range) differ")
        }
        // A stage over the pulled copy computes what one over the original computes.
        let entries = [StageEntry(sequence: SequenceID(1), position: 0)]
        let hidden = StageBatch(entries: entries, hidden: (0..<576).map { Float($0 % 7) * 0.1 - 0.3 })
        let original = try LlamaStage(file: file, layers: layers, contextLimit: 16)
        let pulled = try LlamaStage(file: copy, layers: layers, contextLimit: 16)
        guard case .hidden(let x, _, _) = try original.forward(hidden), case .hidden(let y, _, _) = try pulled.forward(hidden) else {
            return XCTFail("a middle stage outputs hidden states")
        }
        XCTAssertEqual(x, y)

        // The cache now reports the stage's blocks (and neither the embedding nor the output).
        let contents = LayerCache.contents(directory: cache)
        XCTAssertEqual(contents, [CachedLayers(modelSHA256: sha, layers: [3, 4, 5], embedding: false, output: false)])

        let served = source.chunksServed
        let again = try await fetcher.fetch(assignment, source: address)
        XCTAssertEqual(again.downloadedBytes, 0)
        XCTAssertEqual(again.reusedBytes, report.neededBytes)
        XCTAssertEqual(source.chunksServed, served, "nothing was requested the second time")
    }

    /// Log lines a test can read.
    private final class CapturedLog: LogHandler, @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [(String, Logger.Metadata)] = []
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            lock.withLock { lines.append(("\(event.message)", event.metadata ?? [:])) }
        }
        func entries(_ message: String) -> [Logger.Metadata] { lock.withLock { lines.filter { $0.0 == message }.map(\.1) } }
    }

    /// A pull reports its progress while it runs (for heartbeats) and logs it with the rate and
    /// the time left; afterwards no progress is reported.
    func testPullReportsProgressWhileItRuns() async throws {
        let sha = String(repeating: "7", count: 64)
        try await withHealthySource("fetch-progress-test", sha: sha) { file, loop, address, cache in
            var settings = LayerFetcher.Settings()
            settings.requestTimeout = .seconds(5)
            settings.logInterval = .zero
            let log = CapturedLog()
            let fetcher = LayerFetcher(loop: loop, codec: WireCodec(), security: .plain, coordinatorPublicKey: "",
                                       cacheDirectory: cache, settings: settings, logger: Logger(label: "fetch-progress") { _ in log })
            let layers = LayerRange(0, 30)!
            let assignment = StageAssignment(
                planEpoch: 1, modelName: "m.gguf", modelSHA256: sha, modelSize: UInt64(file.fileSize), modelLayerCount: 30,
                layers: layers, stageIndex: 0, stageCount: 1, nextHop: "tcp://127.0.0.1:1", resultAddress: "tcp://127.0.0.1:1",
                activationDType: .f32, maxContextTokens: 16, maxBatchSequences: 1, maxBatchTokens: 16)
            XCTAssertNil(fetcher.progress)
            let finished = LockedValue(false)
            let pull = Task {
                defer { finished.withLock { $0 = true } }
                return try await fetcher.fetch(assignment, source: address)
            }
            var seen: [PullProgress] = []
            while !finished.withLock({ $0 }) {
                if let p = fetcher.progress { seen.append(p) }
                try await Task.sleep(for: .milliseconds(1))
            }
            let report = try await pull.value
            XCTAssertNil(fetcher.progress, "no pull runs any more")
            // The header first, then the tensors: the second phase's total is the larger.
            let total = seen.map(\.totalBytes).max() ?? 0
            let tensors = seen.filter { $0.totalBytes == total }
            XCTAssertGreaterThan(total, 10 << 20, "the progress of the tensor blocks was seen")
            XCTAssertLessThanOrEqual(total, report.downloadedBytes)
            XCTAssertTrue(tensors.contains { $0.doneBytes > 0 && $0.doneBytes < total }, "progress part way was seen")
            for p in seen {
                XCTAssertEqual(p.layers, layers)
                XCTAssertLessThanOrEqual(p.doneBytes, p.totalBytes)
            }
            XCTAssertTrue(zip(tensors, tensors.dropFirst()).allSatisfy { $0.doneBytes <= $1.doneBytes }, "progress only grows")
            let lines = log.entries("pulling layers")
            XCTAssertFalse(lines.isEmpty, "progress lines are logged")
            for key in ["done_mib", "total_mib", "mib_per_s", "eta_s", "layers"] {
                XCTAssertNotNil(lines.last?[key], "\(key) is logged")
            }
            XCTAssertTrue(lines.contains { ($0["mib_per_s"].map { "\($0)" } ?? "0.0") != "0.0" }, "a rate is measured")
        }
    }

    /// A pull waiting for chunks ends at once when its task is cancelled (a newer assignment or
    /// shutdown replaces it), not after the request timeout.
    func testCancellingAPullEndsItPromptly() async throws {
        let sha = String(repeating: "6", count: 64)
        try await withHealthySource("fetch-cancel-test", sha: sha, configure: { $0.answersChunks = false }) { file, loop, address, cache in
            var settings = LayerFetcher.Settings()
            settings.requestTimeout = .seconds(30)
            let fetcher = LayerFetcher(loop: loop, codec: WireCodec(), security: .plain, coordinatorPublicKey: "",
                                       cacheDirectory: cache, settings: settings, logger: Logger(label: "fetch-cancel-test"))
            let assignment = StageAssignment(
                planEpoch: 1, modelName: "m.gguf", modelSHA256: sha, modelSize: UInt64(file.fileSize), modelLayerCount: 30,
                layers: LayerRange(0, 30)!, stageIndex: 0, stageCount: 1, nextHop: "tcp://127.0.0.1:1", resultAddress: "tcp://127.0.0.1:1",
                activationDType: .f32, maxContextTokens: 16, maxBatchSequences: 1, maxBatchTokens: 16)
            let pull = Task { () -> String in
                do {
                    _ = try await fetcher.fetch(assignment, source: address)
                    return "finished"
                } catch {
                    return "\(error)"
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            let cancelled = ContinuousClock.now
            pull.cancel()
            let outcome = await pull.value
            XCTAssertLessThan(ContinuousClock.now - cancelled, .seconds(5), outcome)
            XCTAssertNotEqual(outcome, "finished")
        }
    }

    /// A standby pull (issue 13): one connection, its progress apart from a stage's, refused over
    /// its budget, and it fails at once instead of waiting while the cache is busy; what it
    /// pulled is reported like any cached layers.
    func testStandbyPullsKeepToTheirBudgetAndDoNotWaitForABusyCache() async throws {
        let sha = String(repeating: "8", count: 64)
        try await withHealthySource("fetch-standby-test", sha: sha) { file, loop, address, cache in
            var settings = LayerFetcher.Settings()
            settings.standbyBytesPerSecond = 32 * 1_048_576
            let fetcher = LayerFetcher(loop: loop, codec: WireCodec(), security: .plain, coordinatorPublicKey: "",
                                       cacheDirectory: cache, settings: settings, logger: Logger(label: "fetch-standby"))
            let pull = LayerPull(modelName: "m.gguf", modelSHA256: sha, modelSize: UInt64(file.fileSize), modelLayerCount: 30,
                                 layers: LayerRange(26, 30)!)
            do throws(LayerFetchError) {
                _ = try await fetcher.fetch(pull, source: address, priority: .standby(budgetBytes: 1 << 20))
                XCTFail("four layers and the output do not fit in 1 MiB")
            } catch {
                XCTAssertTrue(error.overBudget, "\(error)")
            }
            // Another worker holds the cache: the standby pull gives up at once.
            let held = try LayerCache(directory: cache, sha256: sha, size: UInt64(file.fileSize), blockSize: 1 << 20)
            let started = ContinuousClock.now
            do throws(LayerFetchError) {
                _ = try await fetcher.fetch(pull, source: address, priority: .standby(budgetBytes: 1 << 30))
                XCTFail("the cache is busy")
            } catch {
                XCTAssertTrue(error.cacheBusy, "\(error)")
            }
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
            withExtendedLifetime(held) {}
            _ = consume held
            let paced = ContinuousClock.now
            let report = try await fetcher.fetch(pull, source: address, priority: .standby(budgetBytes: 1 << 30))
            XCTAssertGreaterThan(report.downloadedBytes, 8 << 20)
            let seconds = Double((ContinuousClock.now - paced).components.attoseconds) / 1e18 + Double((ContinuousClock.now - paced).components.seconds)
            XCTAssertGreaterThan(seconds, Double(report.downloadedBytes) / settings.standbyBytesPerSecond * 0.8,
                                 "a standby pull keeps to its rate")
            XCTAssertNil(fetcher.progress, "a standby pull is not a stage's pull")
            XCTAssertNil(fetcher.standbyProgress)
            XCTAssertEqual(LayerCache.contents(directory: cache),
                           [CachedLayers(modelSHA256: sha, layers: [26, 27, 28, 29], embedding: true, output: true)],
                           "the tied output is the embedding")
            // A stage of those layers then loads without a pull.
            let stage = try await fetcher.fetch(pull, source: address, priority: .stage)
            XCTAssertEqual(stage.downloadedBytes, 0)
        }
    }

    /// Runs `body` with the test model, a model source serving it under `sha` on its own loop
    /// (no fault; `configure` may set one), its address and an empty cache directory, and tears
    /// them down afterwards.
    private func withHealthySource(_ name: String, sha: String, configure: (FaultySource) -> Void = { _ in },
                                   _ body: (GGUFFile, EventLoop, String, String) async throws -> Void) async throws {
        let file = try GGUFFile(path: try TestModel.requirePath())
        let context = try Context()
        let loop = try EventLoop(context: context, name: name)
        defer {
            loop.shutdown()
            context.terminate()
        }
        let source = try FaultySource(loop: loop, file: file, sha: sha, lostBlock: .max, misplacedBlock: .max)
        configure(source)
        let address = try await source.socket.withSocket { s throws(ZMQError) in try s.lastEndpoint }
        let server = Task { await source.run() }
        defer { server.cancel() }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: cache) }
        try await body(file, loop, address, cache)
    }
}
