import CaravanCore
import Planning
import XCTest

final class PaperPlannerTests: XCTestCase {
    private let llama70b = ModelArchitecture.presets["llama3-70b"]!

    /// Llama 3 70B at Q4_K_M is a 42.5 GB file (published GGUFs: 42.52 GB); the layer mixture of
    /// llama.cpp's quantizer (Q6_K attn_v/ffn_down in half the blocks, Q6_K output) gives that.
    func testLlama3_70bQ4KMSizesMatchThePublishedFile() throws {
        let facts = try ModelFacts(architecture: llama70b, quantization: .q4_k_m)
        XCTAssertEqual(facts.layerCount, 80)
        let total = Double(facts.weightBytes)
        XCTAssertEqual(total / 1e9, 42.5, accuracy: 0.3)
        // Block 0 is in the first eighth (more bits), block 10 is not, block 12 is (every third).
        XCTAssertGreaterThan(facts.layerBytes[0], facts.layerBytes[10])
        XCTAssertEqual(facts.layerBytes[12], facts.layerBytes[0])
        XCTAssertEqual(facts.layerBytes.filter { $0 == facts.layerBytes[0] }.count, 40)
        // A plain block: 855.6 M weights at 4.5 bits plus two F32 norms.
        XCTAssertEqual(facts.layerBytes[10], 481_296_384 + 2 * 8192 * 4)
        XCTAssertEqual(facts.kvBytesPerTokenPerLayer, 2 * 1024 * 2)
        let q40 = try ModelFacts(architecture: llama70b, quantization: .q4_0)
        XCTAssertEqual(q40.layerBytes[10], q40.layerBytes[0], "Q4_0 has no mixture")
    }

    func testFourMachinesOf32GiBHoldLlama70bWithBalancedStagesAndAPredictedTime() throws {
        let facts = try ModelFacts(architecture: llama70b, quantization: .q4_k_m)
        let workers = (1...4).map { PaperWorker(id: "m\($0)", memoryBytes: 32 << 30) }
        let cost = TokenCostModel(layerMs: 10, referenceLayerBytes: Double(facts.layerBytes[10]), hopMs: 0.5,
                                  linkBytesPerMs: 125_000)
        let p = try PaperPlanner.predict(model: facts, workers: workers, cost: cost, contextTokens: 2048, batchSequences: 4)
        // The last stage also runs the output head (worth about 1.7 blocks), so it takes one block less.
        XCTAssertEqual(p.plan.stages.map(\.layers), [LayerRange(0, 21)!, LayerRange(21, 41)!, LayerRange(41, 61)!, LayerRange(61, 80)!])
        XCTAssertTrue(p.plan.stages.allSatisfy { $0.memoryBytes < 32 << 30 })
        // Each stage is priced by its bytes (blocks with more bits cost more).
        let stage1Bytes = (21..<41).reduce(0) { $0 + facts.layerBytes[$1] }
        XCTAssertEqual(p.stageMs[1], 10 * Double(stage1Bytes) / Double(facts.layerBytes[10]), accuracy: 1e-9)
        // The last stage also runs the output head.
        let stage3Bytes = (61..<80).reduce(0) { $0 + facts.layerBytes[$1] } + facts.outputBytes
        XCTAssertEqual(p.stageMs[3], 10 * Double(stage3Bytes) / Double(facts.layerBytes[10]), accuracy: 1e-9)
        // Hops: tokens in, 3 activation hops of 8192 F16 values, the sampled token back (not 128K logits).
        XCTAssertEqual(p.hopMs.count, 5)
        XCTAssertEqual(p.hopMs[1], 0.5 + 16384.0 / 125_000, accuracy: 1e-12)
        XCTAssertEqual(p.hopMs[4], 0.5 + Double(PaperPlanner.sampledTokenResultBytes) / 125_000, accuracy: 1e-12)
        XCTAssertLessThan(p.hopMs[4], 0.51)
        XCTAssertEqual(p.msPerToken, p.stageMs.reduce(0, +) + p.hopMs.reduce(0, +), accuracy: 1e-9)
        XCTAssertEqual(p.tokensPerSecond, 1000 / p.msPerToken, accuracy: 1e-9)
        XCTAssertEqual(p.pipelinedTokensPerSecond, 1000 / p.stageMs.max()!, accuracy: 1e-9)
    }

    func testFasterWorkerTakesMoreLayersAndTooLittleMemoryIsExplained() throws {
        let facts = try ModelFacts(architecture: llama70b, quantization: .q4_k_m)
        let cost = TokenCostModel(layerMs: 10, referenceLayerBytes: 5e8, hopMs: 0)
        let p = try PaperPlanner.predict(model: facts, workers: [
            PaperWorker(id: "fast", memoryBytes: 64 << 30, speed: 3), PaperWorker(id: "slow", memoryBytes: 64 << 30, speed: 1),
        ], cost: cost, contextTokens: 1024, batchSequences: 1)
        XCTAssertEqual(p.plan.stages.map(\.layers.count), [61, 19], "3:1, the slow last stage also running the output head")
        XCTAssertThrowsError(try PaperPlanner.predict(model: facts, workers: [PaperWorker(id: "a", memoryBytes: 16 << 30)],
                                                      cost: cost, contextTokens: 1024, batchSequences: 1)) { error in
            XCTAssertTrue("\(error)".contains("cannot hold the model"), "\(error)")
        }
    }

    func testAnArchitectureWithImpossibleHeadsIsRefused() throws {
        var broken = llama70b
        broken.kvHeadCount = 7
        XCTAssertThrowsError(try ModelFacts(architecture: broken, quantization: .q4_0)) { error in
            XCTAssertTrue("\(error)".contains("KV heads"), "\(error)")
        }
    }

    func testWorkerSpecsAndByteSizesParse() throws {
        XCTAssertEqual(PaperPlanner.parseBytes("32GiB"), 32 << 30)
        XCTAssertEqual(PaperPlanner.parseBytes("32G"), 32 << 30)
        XCTAssertEqual(PaperPlanner.parseBytes("1.5 GB"), 1_500_000_000)
        XCTAssertEqual(PaperPlanner.parseBytes("512mib"), 512 << 20)
        XCTAssertEqual(PaperPlanner.parseBytes("4096"), 4096)
        XCTAssertNil(PaperPlanner.parseBytes("lots"))
        XCTAssertNil(PaperPlanner.parseBytes("-3G"))
        XCTAssertEqual(try PaperWorker.parse("mem=32GiB", index: 2), PaperWorker(id: "m3", memoryBytes: 32 << 30, speed: 1))
        XCTAssertEqual(try PaperWorker.parse("id=big, mem=64G, speed=2.5", index: 0),
                       PaperWorker(id: "big", memoryBytes: 64 << 30, speed: 2.5))
        for bad in ["speed=2", "mem=0", "mem=32GiB,speed=-1", "mem=32GiB,colour=red", "mem"] {
            XCTAssertThrowsError(try PaperWorker.parse(bad, index: 0), bad)
        }
    }
}
