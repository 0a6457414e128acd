import CaravanCore
import CaravanWire
import Worker
import XCTest

/// Pull progress (rate over a window, time left), its wire form, and what a partial copy of a
/// model holds (reported to the planner).
final class PullProgressTests: XCTestCase {
    func testMeterMeasuresTheRecentRateAndTimeLeft() {
        var m = PullMeter(totalBytes: 1_000, window: 2)
        XCTAssertEqual(m.bytesPerSecond, 0)
        XCTAssertNil(m.etaSeconds())
        m.record(bytes: 0, at: 0)
        m.record(bytes: 100, at: 1)
        XCTAssertEqual(m.bytesPerSecond, 100, accuracy: 1e-9)
        XCTAssertEqual(m.etaSeconds() ?? -1, 9, accuracy: 1e-9)
        // The pull speeds up: after the window has passed, only recent samples count.
        m.record(bytes: 300, at: 2)
        m.record(bytes: 500, at: 3)
        m.record(bytes: 700, at: 4)
        XCTAssertEqual(m.bytesPerSecond, 200, accuracy: 1e-9)
        XCTAssertEqual(m.etaSeconds() ?? -1, 1.5, accuracy: 1e-9)
        // A sample from the past is ignored; progress with more done than sampled uses it.
        m.record(bytes: 10, at: 1)
        XCTAssertEqual(m.doneBytes, 700)
        let p = m.progress(layers: LayerRange(2, 4)!, done: 900)
        XCTAssertEqual(p, PullProgress(layers: LayerRange(2, 4)!, totalBytes: 1_000, doneBytes: 900, bytesPerSecond: 200,
                                       etaSeconds: 0.5))
        XCTAssertEqual(m.progress(layers: LayerRange(2, 4)!, done: 5_000).doneBytes, 1_000, "done is capped at the total")
        XCTAssertEqual(m.progress(layers: LayerRange(2, 4)!, done: 1_000).etaSeconds, 0)
    }

    func testProgressOnTheWireAndHostileValues() {
        let p = PullProgress(layers: LayerRange(3, 7)!, totalBytes: 5 << 30, doneBytes: 1 << 30, bytesPerSecond: 4.5e8, etaSeconds: 9.5)
        let w = p.wire
        XCTAssertEqual(w.etaMs, 9_500)
        XCTAssertEqual(PullProgress(wire: w), p)
        var bad = w
        bad.layerStart = 7
        XCTAssertNil(PullProgress(wire: bad), "an empty layer range is dropped")
        bad = w
        bad.doneBytes = .max
        bad.bytesPerSecond = .nan
        bad.etaMs = 0
        let clamped = PullProgress(wire: bad)
        XCTAssertEqual(clamped?.doneBytes, w.totalBytes)
        XCTAssertEqual(clamped?.bytesPerSecond, 0)
        XCTAssertNil(clamped?.etaSeconds)
        let odd = PullProgress(layers: LayerRange(0, 1)!, totalBytes: 1, doneBytes: 0, bytesPerSecond: -.infinity, etaSeconds: .infinity)
        XCTAssertEqual(odd.wire.bytesPerSecond, 0)
        XCTAssertEqual(odd.wire.etaMs, 0)
    }

    func testCachedLayersOnTheWireAndHostileValues() {
        let sha = String(repeating: "ab", count: 32)
        let c = CachedLayers(modelSHA256: sha, layers: [5, 1, 3, 1], embedding: true, output: false)
        XCTAssertEqual(c.layers, [1, 3, 5], "sorted and unique")
        XCTAssertEqual(CachedLayers(wire: c.wire), c)
        var w = c.wire
        w.modelSha256 = "not a hash"
        XCTAssertNil(CachedLayers(wire: w))
        w = c.wire
        w.layers = Array(repeating: 1, count: CachedLayers.maxLayers + 1)
        XCTAssertNil(CachedLayers(wire: w), "too many layers")
        let many = (0..<40).map { _ in c.wire } + [w]
        XCTAssertEqual(CachedLayers.fromWire(many).count, CachedLayers.maxModels)
    }

    /// Which blocks, embedding and output a partial copy holds, from the blocks present.
    func testHeldLayersOfAPartialCopy() {
        // 100-byte blocks: header [0, 100), token_embd [100, 300), blk.0 [300, 400) + [400, 450),
        // blk.1 [450, 600), output_norm [600, 610), output [700, 900).
        let tensors = [
            TensorExtent(name: "token_embd.weight", bytes: 100..<300),
            TensorExtent(name: "blk.0.attn_q.weight", bytes: 300..<400),
            TensorExtent(name: "blk.0.ffn_down.weight", bytes: 400..<450),
            TensorExtent(name: "blk.1.attn_q.weight", bytes: 450..<600),
            TensorExtent(name: "output_norm.weight", bytes: 600..<610),
            TensorExtent(name: "output.weight", bytes: 700..<900),
        ]
        func held(_ blocks: Set<Int>, _ t: [TensorExtent] = tensors) -> (layers: [Int], embedding: Bool, output: Bool) {
            StageByteRanges.held(tensors: t, presentBlocks: blocks, blockSize: 100, fileSize: 900)
        }
        XCTAssertEqual(held([0, 3]).layers, [], "blk.0 also needs block 4")
        XCTAssertEqual(held([0, 3, 4]).layers, [0])
        XCTAssertEqual(held([0, 3, 4, 5]).layers, [0, 1], "block 4 holds the start of blk.1 too")
        XCTAssertFalse(held([0, 3, 4, 5]).embedding)
        XCTAssertTrue(held([1, 2]).embedding)
        XCTAssertFalse(held([6]).output, "the output also needs output.weight")
        XCTAssertTrue(held([6, 7, 8]).output)
        // Tied output (no output.weight): the norm and the embedding.
        let tied = tensors.filter { $0.name != "output.weight" }
        XCTAssertFalse(held([6], tied).output)
        XCTAssertTrue(held([1, 2, 6], tied).output)
    }
}
