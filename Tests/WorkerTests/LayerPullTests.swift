import CaravanCore
import CaravanWire
import Foundation
import GGUF
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// The worker's side of pulling layers: which bytes a stage needs, which blocks hold them, the
/// request schedule (window, retries, bad chunks), chunk validation by the codec, and the cache.
final class LayerPullTests: XCTestCase {
    // A 4-block model: header [0, 100), then token_embd, blocks 0-3 (two tensors each),
    // output_norm, rope_freqs; optionally an untied output.weight.
    private func tensors(untiedOutput: Bool = false) -> [TensorExtent] {
        var out: [TensorExtent] = [TensorExtent(name: "token_embd.weight", bytes: 100..<1_100)]
        var offset: UInt64 = 1_100
        for layer in 0..<4 {
            for part in ["attn_q.weight", "ffn_down.weight"] {
                out.append(TensorExtent(name: "blk.\(layer).\(part)", bytes: offset..<(offset + 50)))
                offset += 50
            }
        }
        out.append(TensorExtent(name: "output_norm.weight", bytes: offset..<(offset + 10)))  // 1500..<1510
        out.append(TensorExtent(name: "rope_freqs.weight", bytes: (offset + 10)..<(offset + 20)))  // 1510..<1520
        if untiedOutput { out.append(TensorExtent(name: "output.weight", bytes: 2_000..<3_000)) }
        return out
    }

    private func ranges(_ start: Int, _ end: Int, untiedOutput: Bool = false) -> [Range<UInt64>] {
        StageByteRanges.ranges(headerBytes: 100, tensors: tensors(untiedOutput: untiedOutput),
                               layers: LayerRange(start, end)!, layerCount: 4)
    }

    func testFirstStageNeedsHeaderEmbeddingItsBlocksAndGlobalTensors() {
        // header + token_embd + blk.0 + blk.1 are contiguous; rope_freqs is needed by every stage.
        XCTAssertEqual(ranges(0, 2), [0..<1_300, 1_510..<1_520])
    }

    func testMiddleStageNeedsOnlyHeaderAndItsBlocks() {
        XCTAssertEqual(ranges(1, 3), [0..<100, 1_200..<1_400, 1_510..<1_520])
    }

    func testLastStageWithTiedOutputNeedsTheEmbedding() {
        XCTAssertEqual(ranges(2, 4), [0..<1_100, 1_300..<1_520])
        XCTAssertEqual(StageByteRanges.neededTensors(tensors().map(\.name), layers: LayerRange(2, 4)!, layerCount: 4),
                       ["token_embd.weight", "blk.2.attn_q.weight", "blk.2.ffn_down.weight", "blk.3.attn_q.weight",
                        "blk.3.ffn_down.weight", "output_norm.weight", "rope_freqs.weight"])
    }

    func testLastStageWithOwnOutputSkipsTheEmbedding() {
        XCTAssertEqual(ranges(2, 4, untiedOutput: true), [0..<100, 1_300..<1_520, 2_000..<3_000])
        XCTAssertEqual(ranges(0, 2, untiedOutput: true), [0..<1_300, 1_510..<1_520], "the first stage has no output")
    }

    func testSingleStageNeedsEverything() {
        XCTAssertEqual(ranges(0, 4), [0..<1_520])
    }

    func testBlocksCoveringRanges() {
        let blocks = StageByteRanges.blocks(covering: [0..<10, 1_023..<1_025, 4_096..<4_096, 5_000..<9_000],
                                            blockSize: 1_024, fileSize: 6_000)
        XCTAssertEqual(blocks, [0, 1, 4, 5], "touching a block's first or last byte needs it; past the file is ignored")
        XCTAssertEqual(StageByteRanges.blockBytes(5, blockSize: 1_024, fileSize: 6_000), 5_120..<6_000, "short last block")
        XCTAssertEqual(StageByteRanges.merge([5..<7, 0..<2, 2..<3, 6..<9, 4..<4]), [0..<3, 5..<9])
    }

    /// On the real model: a middle stage needs the header and exactly its blocks' tensors.
    func testRealModelMiddleStage() throws {
        let file = try GGUFFile(path: try TestModel.requirePath())
        let layers = LayerRange(10, 20)!
        let ranges = StageByteRanges.ranges(file: file, layers: layers, layerCount: 30)
        let blockBytes = file.tensorInfos.filter { t in
            guard t.name.hasPrefix("blk."), let n = Int(t.name.split(separator: ".")[1]) else { return false }
            return layers.contains(n)
        }.reduce(0) { $0 + $1.byteCount }
        XCTAssertEqual(StageByteRanges.byteCount(ranges), UInt64(file.dataOffset + blockBytes))
        XCTAssertEqual(ranges.first?.lowerBound, 0)
        let last = StageByteRanges.ranges(file: file, layers: LayerRange(20, 30)!, layerCount: 30)
        let embedding = try XCTUnwrap(file.tensor(named: "token_embd.weight"))
        let start = UInt64(file.dataOffset + embedding.relativeOffset)
        XCTAssertTrue(last.contains { $0.contains(start) }, "SmolLM2 ties its output to the embedding: the last stage needs it")
    }

    // MARK: Schedule

    func testScheduleKeepsAWindowAndCompletes() {
        var s = ChunkSchedule(blocks: [3, 4, 5], blockSize: 100, fileSize: 550, window: 2, maxAttempts: 3)
        let first = s.nextRequests()
        XCTAssertEqual(first.map(\.block), [3, 4])
        XCTAssertEqual(first.map(\.offset), [300, 400])
        XCTAssertEqual(s.nextRequests(), [], "the window is full")
        XCTAssertEqual(s.received(id: first[0].id, offset: 300, count: 100), .accept(block: 3))
        let second = s.nextRequests()
        XCTAssertEqual(second.map(\.block), [5])
        XCTAssertEqual(second.first?.length, 50, "the last block is short")
        XCTAssertEqual(s.received(id: second[0].id, offset: 500, count: 50), .accept(block: 5))
        XCTAssertEqual(s.received(id: first[1].id, offset: 400, count: 100), .accept(block: 4))
        XCTAssertTrue(s.isComplete)
        XCTAssertEqual(s.completedBytes, 250)
        XCTAssertEqual(s.retries, 0)
    }

    func testWrongOffsetOrSizeIsRejectedAndAskedAgain() {
        var s = ChunkSchedule(blocks: [1], blockSize: 100, fileSize: 1_000, window: 4, maxAttempts: 3)
        let r = s.nextRequests()[0]
        guard case .reject(let why) = s.received(id: r.id, offset: 200, count: 100) else { return XCTFail("wrong offset accepted") }
        XCTAssertTrue(why.contains("asked for [100"), why)
        let again = s.nextRequests()
        XCTAssertEqual(again.map(\.block), [1])
        XCTAssertNotEqual(again[0].id, r.id, "a retry is a new request")
        XCTAssertEqual(s.received(id: r.id, offset: 100, count: 100), .ignore, "a late reply to the old request is ignored")
        guard case .reject = s.received(id: again[0].id, offset: 100, count: 4_096) else { return XCTFail("oversized chunk accepted") }
        let third = s.nextRequests()
        XCTAssertEqual(s.received(id: third[0].id, offset: 100, count: 100), .accept(block: 1))
        XCTAssertTrue(s.isComplete)
        XCTAssertEqual(s.retries, 2)
    }

    func testTimeoutsAndFailuresRetryThenGiveUp() {
        var s = ChunkSchedule(blocks: [0, 1], blockSize: 10, fileSize: 20, window: 2, maxAttempts: 2)
        XCTAssertEqual(s.nextRequests().count, 2)
        s.timedOut()
        XCTAssertEqual(s.inFlightCount, 0)
        let again = s.nextRequests()
        XCTAssertEqual(Set(again.map(\.block)), [0, 1], "both lost requests are asked again")
        s.failed(id: again[0].id, reason: "checksum mismatch")
        XCTAssertNotNil(s.failure, "the second failure of a block with maxAttempts 2 ends the download")
        XCTAssertTrue(s.failure?.contains("checksum mismatch") ?? false)
        XCTAssertEqual(s.nextRequests(), [], "nothing more is asked after a failure")
    }

    // MARK: Chunk frames

    private func chunkFrames(_ bytes: [UInt8], offset: UInt64, requestID: UInt64 = 9, codec: WireCodec = WireCodec()) throws -> [Message] {
        try codec.encode(ModelChunkData(sha256: String(repeating: "a", count: 64), offset: offset, payload: Message(bytes)),
                         requestID: requestID)
    }

    func testChunkRoundTrip() throws {
        let bytes = (0..<1_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        guard case .modelChunk(let c, 9) = try WireCodec().decode(try chunkFrames(bytes, offset: 4_096)) else { return XCTFail() }
        XCTAssertEqual(c.offset, 4_096)
        XCTAssertEqual(c.payload.bytes, bytes)
    }

    func testBadChunksAreRejected() throws {
        let codec = WireCodec()
        let frames = try chunkFrames([1, 2, 3, 4], offset: 0)
        var corrupt = frames[1].bytes
        corrupt[2] ^= 0x40
        XCTAssertThrowsError(try codec.decode([frames[0], Message(corrupt)])) { e in
            guard case WireError.checksumMismatch = e else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(ModelChunkData.requestID(of: [frames[0], Message(corrupt)]), 9, "the bad chunk's request can be retried at once")
        XCTAssertThrowsError(try codec.decode([frames[0], Message([1, 2, 3])])) { e in
            guard case WireError.payloadSizeMismatch = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try codec.decode([frames[0]])) { e in XCTAssertEqual(e as? WireError, .missingPayload) }
        // Oversized: more than the receiver's payload limit.
        let small = WireCodec(limits: WireLimits(maxPayloadBytes: 1_000))
        let big = try chunkFrames([UInt8](repeating: 7, count: 2_000), offset: 0)
        XCTAssertThrowsError(try small.decode(big)) { e in
            guard case WireError.payloadTooLarge = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try small.encode(ModelChunkData(sha256: String(repeating: "a", count: 64), offset: 0,
                                                             payload: Message([UInt8](repeating: 7, count: 2_000)))))
        // A chunk request without a hash, and a model info whose data offset lies past the file.
        XCTAssertThrowsError(try codec.encode(.modelChunkRequest(.with { $0.length = 1 })))
        XCTAssertThrowsError(try codec.encode(.modelInfo(.with {
            $0.model.sha256 = String(repeating: "a", count: 64)
            $0.model.sizeBytes = 10
            $0.dataOffset = 11
            $0.maxChunkBytes = 1
        })))
    }

    // MARK: Cache and addresses

    func testCacheReusesVerifiedBlocksAndDropsCorruptOnes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("layer-cache-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sha = String(repeating: "b", count: 64)
        do {
            let cache = try LayerCache(directory: dir, sha256: sha, size: 2_500, blockSize: 1_000)
            XCTAssertEqual(cache.check([0, 1, 2]).missing, [0, 1, 2])
            try [UInt8](repeating: 1, count: 1_000).withUnsafeBytes { try cache.write(block: 0, bytes: $0) }
            try [UInt8](repeating: 3, count: 500).withUnsafeBytes { try cache.write(block: 2, bytes: $0) }
            XCTAssertThrowsError(try [UInt8](repeating: 3, count: 10).withUnsafeBytes { try cache.write(block: 1, bytes: $0) },
                                 "a block of the wrong size")
            try cache.commit()
        }
        let path = dir + "/" + sha + ".gguf"
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue, 2_500)
        do {
            let again = try LayerCache(directory: dir, sha256: sha, size: 2_500, blockSize: 1_000)
            let checked = again.check([0, 1, 2])
            XCTAssertEqual(checked.cached, [0, 2])
            XCTAssertEqual(checked.missing, [1])
        }
        // A byte changed on disk: that block is fetched again.
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: 2_100)
        try handle.write(contentsOf: Data([9]))
        try handle.close()
        do {
            let third = try LayerCache(directory: dir, sha256: sha, size: 2_500, blockSize: 1_000)
            try withExtendedLifetime(third) {
                XCTAssertEqual(third.check([0, 2]).missing, [2])
                XCTAssertThrowsError(try LayerCache(directory: dir, sha256: sha, size: 2_500, blockSize: 1_000), "locked by `third`") { e in
                    XCTAssertEqual((e as? LayerFetchError)?.cacheBusy, true)
                }
            }
        }
        XCTAssertEqual(try LayerCache(directory: dir, sha256: sha, size: 2_500, blockSize: 500).check([0]).missing, [0],
                       "another block size starts afresh")
    }

    func testModelSourceAddressResolution() {
        XCTAssertEqual(LayerFetcher.resolve(source: "tcp://0.0.0.0:7300", coordinatorEndpoint: "tcp://10.0.0.1:7000"), "tcp://10.0.0.1:7300")
        XCTAssertEqual(LayerFetcher.resolve(source: "tcp://*:7300", coordinatorEndpoint: "tcp://coord.lan:7000"), "tcp://coord.lan:7300")
        XCTAssertEqual(LayerFetcher.resolve(source: "tcp://10.0.0.9:7300", coordinatorEndpoint: "tcp://10.0.0.1:7000"), "tcp://10.0.0.9:7300")
    }
}
