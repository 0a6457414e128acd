import ArgumentParser
import CaravanCore
import CaravanWire
import Foundation
import GGUF
import Planning

/// `caravanctl plan`: what the planner would do, without doing it.
///
/// Without `--worker` it asks the coordinator (its registered workers, its context and batch): for
/// the model it serves, or for a model file (its GGUF header is read here) or a model shape. With
/// `--worker` (repeated) it plans on paper, no coordinator needed: the workers are hypothetical,
/// and the time per token is predicted from a measured per-layer cost and hop cost.
struct Plan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Preview a plan: on the current workers (asks the coordinator), or on hypothetical --worker machines (on paper).",
        discussion: """
            Examples:
              caravanctl plan --insecure                                  # the served model, current workers
              caravanctl plan --insecure --model-file other.gguf          # another file, current workers
              caravanctl plan --shape llama3-70b --quant q4_k_m --worker mem=32GiB --worker mem=32GiB \\
                  --worker mem=32GiB --worker mem=32GiB                   # on paper, 4 machines of 32 GiB
            Shapes: \(ModelArchitecture.presets.keys.sorted().joined(separator: ", ")); quantizations: \
            \(ModelQuantization.allCases.map(\.rawValue).joined(separator: ", ")).
            """)

    @OptionGroup var connection: Connection

    @Option(name: .customLong("model-file"), help: "Plan this GGUF file (its header is read locally).")
    var modelFile: String?

    @Option(help: "Plan a model by shape: a preset name (see below); --layers etc. override its numbers.")
    var shape: String?

    @Option(help: "Quantization of a --shape model.")
    var quant = "q4_k_m"

    @Option(help: "Shape: transformer blocks.") var layers: Int?
    @Option(help: "Shape: hidden width (d).") var embedding: Int?
    @Option(help: "Shape: query heads.") var heads: Int?
    @Option(name: .customLong("kv-heads"), help: "Shape: key/value heads.") var kvHeads: Int?
    @Option(help: "Shape: feed-forward width.") var ffn: Int?
    @Option(help: "Shape: vocabulary size.") var vocab: Int?

    @Option(name: .customLong("worker"),
            help: "A hypothetical worker, repeatable: mem=32GiB[,speed=1][,id=name] (speed relative to the machine the cost was measured on). Plans on paper.")
    var workers: [String] = []

    @Option(help: "Context per sequence to size KV caches for (default: the coordinator's; on paper 2048).")
    var ctx: Int?

    @Option(name: .customLong("batch-sequences"), help: "Sequences to size KV caches for (default: the coordinator's; on paper 4).")
    var batchSequences: Int?

    @Option(help: "Leave this worker out (repeatable; asks the coordinator).")
    var exclude: [String] = []

    @Option(name: .customLong("layer-ms"), help: "On paper: decode ms of one average layer of this model at speed 1 (default: the measured 70B-layer cost scaled by bytes).")
    var layerMs: Double?

    @Option(name: .customLong("hop-ms"), help: "On paper: fixed cost of one message between machines, ms.")
    var hopMs: Double?

    @Option(name: .customLong("link-gbps"), help: "On paper: network bandwidth between machines, Gbit/s.")
    var linkGbps: Double?

    @Option(name: .customLong("activation-dtype"), help: "On paper: activations between stages, f32 (the coordinator's default) or f16.")
    var activationDType = "f32"

    @Flag(help: "Print the plan as JSON (a PlanPreview message).")
    var json = false

    func validate() throws {
        if modelFile != nil && shape != nil { throw ValidationError("give --model-file or --shape, not both") }
        if ![ctx, batchSequences].allSatisfy({ ($0 ?? 1) >= 1 }) { throw ValidationError("--ctx and --batch-sequences must be positive") }
        if ![ctx, batchSequences].allSatisfy({ ($0 ?? 1) <= Int(UInt32.max) }) {
            throw ValidationError("--ctx and --batch-sequences must be at most \(UInt32.max)")
        }
        guard ["f16", "f32"].contains(activationDType) else { throw ValidationError("--activation-dtype is f16 or f32") }
        if ModelQuantization(rawValue: quant.lowercased()) == nil {
            throw ValidationError("unknown --quant \(quant); one of \(ModelQuantization.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The model to plan, if not the coordinator's current one: name and facts.
    func model() throws -> (String, ModelFacts)? {
        if let modelFile {
            let file = try GGUFFile(path: modelFile)
            return ((modelFile as NSString).lastPathComponent, try ModelFacts(file: file))
        }
        let custom = [layers, embedding, heads, kvHeads, ffn, vocab]
        guard shape != nil || custom.contains(where: { $0 != nil }) else { return nil }
        var a: ModelArchitecture
        if let shape {
            guard let preset = ModelArchitecture.presets[shape.lowercased()] else {
                throw ValidationError("unknown --shape \(shape); one of \(ModelArchitecture.presets.keys.sorted().joined(separator: ", "))")
            }
            a = preset
        } else {
            guard custom.allSatisfy({ $0 != nil }) else {
                throw ValidationError("without --shape, give all of --layers --embedding --heads --kv-heads --ffn --vocab")
            }
            a = ModelArchitecture(name: "custom", layerCount: 0, embeddingLength: 0, headCount: 0, kvHeadCount: 0,
                                  feedForwardLength: 0, vocabularySize: 0)
        }
        if let layers { a.layerCount = layers }
        if let embedding { a.embeddingLength = embedding }
        if let heads { a.headCount = heads }
        if let kvHeads { a.kvHeadCount = kvHeads }
        if let ffn { a.feedForwardLength = ffn }
        if let vocab { a.vocabularySize = vocab }
        let q = ModelQuantization(rawValue: quant.lowercased()) ?? .q4_k_m
        return ("\(a.name) \(q.rawValue.uppercased())", try ModelFacts(architecture: a, quantization: q))
    }

    func run() async throws {
        if !workers.isEmpty { return try onPaper() }
        let shape = try model().map { $0.1.modelShape(name: $0.0) }
        let preview = try await connection.client().planPreview(
            PlanPreviewRequest(shape: shape, excludedWorkers: exclude, maxContextTokens: ctx, maxBatchSequences: batchSequences))
        print(json ? try Caravan_V1_PlanPreview(preview).jsonString(options: jsonOptions) : AdminTables.preview(preview))
        if !preview.feasible { throw ExitCode(2) }
    }

    private func onPaper() throws {
        guard let (name, facts) = try model() else {
            throw ValidationError("on paper (--worker), give the model: --model-file, --shape or the shape numbers")
        }
        let machines = try workers.enumerated().map { i, spec in try PaperWorker.parse(spec, index: i) }
        var cost = TokenCostModel.measuredHere
        if let layerMs {
            cost.layerMs = layerMs
            cost.referenceLayerBytes = Double(facts.layerBytes.reduce(0, +)) / Double(max(1, facts.layerCount))
        }
        if let hopMs { cost.hopMs = hopMs }
        if let linkGbps { cost.linkBytesPerMs = linkGbps * 1e9 / 8 / 1000 }
        cost.activationElementBytes = activationDType == "f32" ? 4 : 2
        let context = ctx ?? 2048
        let batch = batchSequences ?? 4
        let prediction: PaperPrediction
        do {
            prediction = try PaperPlanner.predict(model: facts, workers: machines, cost: cost, contextTokens: context,
                                                  batchSequences: batch)
        } catch {
            print("no plan for \(name): \(error)")
            throw ExitCode(2)
        }
        if json {
            print(try Caravan_V1_PlanPreview(prediction.preview(model: name, workers: machines, contextTokens: context,
                                                                batchSequences: batch)).jsonString(options: jsonOptions))
        } else {
            print(AdminTables.prediction(prediction, model: name, facts: facts, workers: machines, cost: cost,
                                         contextTokens: context, batchSequences: batch))
        }
    }
}
