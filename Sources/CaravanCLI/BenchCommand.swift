import ArgumentParser
import CaravanCore
import Foundation
import Llama

/// `caravan bench`: prefill and decode speed, measured like llama-bench (pp N, tg N).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure prefill (pp) and decode (tg) tokens/s for a model and thread count.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.customShort("p"), .customLong("prompt-tokens")], parsing: .upToNextOption,
            help: "Prompt lengths to measure prefill with (pp).")
    var promptTokens: [Int] = [128, 512]

    @Option(name: [.customShort("g"), .customLong("gen-tokens")], help: "Tokens to decode one at a time (tg).")
    var genTokens: Int = 128

    @Option(name: [.customShort("s"), .customLong("sequences")], help: "Sequences decoding together in one batch (batched tg).")
    var sequences: Int = 1

    @Option(name: [.customShort("r"), .customLong("repetitions")], help: "Repetitions; the median is reported.")
    var repetitions: Int = 3

    @Flag(help: "Print results as JSON lines.")
    var json = false

    @Flag(inversion: .prefixedNo,
          help: "After the tests, measure this machine's memory read bandwidth (1 GiB, 1 and N threads) and print decode's effective bandwidth as a fraction of it.")
    var probe = true

    func validate() throws {
        if promptTokens.contains(where: { $0 < 1 }) || genTokens < 0 || repetitions < 1 || sequences < 1 {
            throw ValidationError("counts must be positive")
        }
    }

    func run() async throws {
        let file = try modelOptions.openFile()
        var options = modelOptions
        options.context = max(promptTokens.max() ?? 0, genTokens) + 8
        let stage = try options.stage(file)
        let vocab = stage.configuration.vocabularySize
        func token(_ i: Int) -> Int32 { Int32((i * 7919 + 13) % vocab) }
        let threads = modelOptions.threadCount
        let name = (file.path as NSString).lastPathComponent

        // Warm-up: touch all weights once.
        _ = try stage.forward(StageBatch(entries: [StageEntry(sequence: SequenceID(999), position: 0, token: 1, wantsLogits: true)]))
        stage.removeSequence(SequenceID(999))

        for pp in promptTokens {
            var times: [Double] = []
            for r in 0..<repetitions {
                let seq = SequenceID(UInt64(r))
                let t0 = DispatchTime.now()
                var p = 0
                while p < pp {
                    let n = min(512, pp - p)
                    let entries = (p..<(p + n)).map { StageEntry(sequence: seq, position: $0, token: token($0), wantsLogits: $0 == pp - 1) }
                    _ = try stage.forward(StageBatch(entries: entries))
                    p += n
                }
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e9)
                stage.removeSequence(seq)
            }
            report(test: "pp\(pp)", tokens: pp, times: times, model: name, threads: threads)
        }
        var decodeBandwidth: Double?
        if genTokens > 0 {
            var times: [Double] = []
            for r in 0..<repetitions {
                let seqs = (0..<sequences).map { SequenceID(UInt64(100 + r * sequences + $0)) }
                let t0 = DispatchTime.now()
                for p in 0..<genTokens {
                    let entries = seqs.map { StageEntry(sequence: $0, position: p, token: token(p), wantsLogits: true) }
                    _ = try stage.forward(StageBatch(entries: entries))
                }
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e9)
                seqs.forEach(stage.removeSequence)
            }
            let label = sequences == 1 ? "tg\(genTokens)" : "tg\(genTokens)x\(sequences)"
            decodeBandwidth = report(test: label, tokens: genTokens * sequences, times: times, model: name,
                                     threads: threads, weightBytes: stage.decodeWeightBytes, steps: genTokens)
        }
        // Memory: peak resident set against the model file plus the largest KV cache used.
        let kvPerPosition = 2 * 2 * stage.configuration.kvDimension * stage.configuration.layerCount
        let kvBytes = kvPerPosition * max(promptTokens.max() ?? 0, genTokens) * max(1, sequences)
        let peak = Self.peakResidentBytes()
        let mb = { (b: Int) in String(format: "%.1f", Double(b) / 1_048_576) }
        if json {
            Console.out("{\"engine\":\"caravan\",\"test\":\"memory\",\"peak_rss_bytes\":\(peak),\"model_bytes\":\(file.fileSize),\"kv_bytes\":\(kvBytes)}\n")
        } else {
            Console.out("memory: peak RSS \(mb(peak)) MiB; model file \(mb(file.fileSize)) MiB + KV cache \(mb(kvBytes)) MiB = \(mb(file.fileSize + kvBytes)) MiB\n")
        }
        // After the memory figure (the probe's 1 GiB buffer would count in the peak).
        if probe, let decode = decodeBandwidth { reportProbe(threads: threads, decode: decode) }
    }

    /// Decode's effective bandwidth (bytes of weights per decoded token x steps per second)
    /// next to what a plain read loop reaches with 1 and `threads` threads.
    private func reportProbe(threads: Int, decode: Double) {
        var counts = [1]
        if threads > 1 { counts.append(threads) }
        for t in counts {
            let bps = MemoryBandwidthProbe.readBytesPerSecond(threads: t)
            if json {
                Console.out("{\"engine\":\"probe\",\"test\":\"read\",\"threads\":\(t),\"bytes_per_second\":\(Int(bps))}\n")
            } else {
                let mine = t == threads ? String(format: " (decode here: %.1f GB/s, %.0f %%)", decode / 1e9, 100 * decode / bps) : ""
                Console.out(String(format: "memory read probe: %d thread%@ %.1f GB/s%@\n", t, t == 1 ? "" : "s", bps / 1e9, mine))
            }
        }
    }

    /// Peak resident set size of this process (VmHWM), in bytes; 0 where /proc is missing.
    static func peakResidentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }

    /// One test's line; for decode (`weightBytes` read per step, `steps` steps per repetition)
    /// also the effective bandwidth: weight bytes per step x steps per second (returned).
    @discardableResult
    private func report(test: String, tokens: Int, times: [Double], model: String, threads: Int,
                        weightBytes: Int? = nil, steps: Int = 0) -> Double? {
        let sorted = times.sorted()
        let median = sorted[sorted.count / 2]
        let tps = Double(tokens) / median
        let bandwidth = weightBytes.map { Double($0) * Double(steps) / median }
        if json {
            let extra = bandwidth.map { ",\"weight_bytes_per_step\":\(weightBytes!),\"effective_bytes_per_second\":\(Int($0))" } ?? ""
            Console.out("{\"engine\":\"caravan\",\"model\":\"\(model)\",\"threads\":\(threads),\"test\":\"\(test)\",\"tokens_per_second\":\(String(format: "%.2f", tps)),\"seconds\":\(String(format: "%.5f", median))\(extra)}\n")
        } else {
            let extra = bandwidth.map { String(format: "  %.1f GB/s of weights", $0 / 1e9) } ?? ""
            Console.out(String(format: "%@  threads=%d  %-10@ %9.2f tok/s  (median of %d, %.3f s)%@\n",
                               model, threads, test, tps, times.count, median, extra))
        }
        return bandwidth
    }
}
