import CaravanCore
import CaravanWire
import Llama

/// What one step may ask of a stage under its assignment, whoever sent it: at most the plan's rows
/// per step, and KV caches that stay within the room the plan sized for the stage (context x
/// batch sequences positions; the coordinator's `KVAdmission` starts jobs only within the same
/// room). A step that would grow the caches past it is refused before anything is allocated.
/// Positions past the context and rows out of order are refused by the stage itself
/// (``StageError``), also before anything is allocated.
///
/// The room is counted in positions, not sequences: admission lets many short jobs share the
/// room of a few long ones, each sequence holding what its cache grew to (at least 64
/// positions, doubled as it fills), so the sequences open at once are at most the room over 64
/// (or over the context when it is shorter).
struct StepLimits: Sendable, Equatable {
    /// Most rows one step may carry (the plan's `max_batch_tokens`).
    let maxRows: Int
    /// Positions of one sequence (the stage's context limit).
    let contextTokens: Int
    /// Sequences the plan sized the caches for.
    let sequences: Int

    /// The limits of `assignment` on a stage whose context limit is `contextLimit` (the
    /// assignment's, or the model's when shorter).
    init(assignment: StageAssignment, contextLimit: Int) {
        maxRows = max(1, assignment.maxBatchTokens)
        contextTokens = max(1, contextLimit)
        sequences = max(1, assignment.maxBatchSequences)
    }

    /// Positions all sequences' caches may hold together.
    var positions: Int {
        let (product, overflow) = contextTokens.multipliedReportingOverflow(by: sequences)
        return overflow ? .max : product
    }

    /// Why `batch` may not run on `stage` now, or nil when it may.
    func refusal(_ batch: StageBatch, on stage: LlamaStage) -> StepRefusal? {
        guard batch.entries.count <= maxRows else { return .tooManyRows(batch.entries.count, limit: maxRows) }
        let after = stage.cachePositions(after: batch)
        guard after.positions <= positions else {
            return .noKVRoom(needed: after.positions, room: positions, context: contextTokens, sequences: sequences,
                             open: after.sequences)
        }
        return nil
    }
}

/// Why a stage refused a step under its assignment's limits (sent back as the `StepResult` error).
enum StepRefusal: Error, Equatable, CustomStringConvertible, Sendable {
    /// More rows than the plan allows in one step.
    case tooManyRows(Int, limit: Int)
    /// The caches would need `needed` positions; the plan sized `room`.
    case noKVRoom(needed: Int, room: Int, context: Int, sequences: Int, open: Int)
    /// A new assignment replaced the stage while the step waited for room.
    case stageReplaced

    var description: String {
        switch self {
        case let .tooManyRows(rows, limit):
            "the step has \(rows) rows; the plan allows \(limit) per step"
        case let .noKVRoom(needed, room, context, sequences, open):
            "no KV room: the step would grow the caches to \(needed) positions (\(open) sequences open); the plan sized "
                + "\(room) (context \(context) x \(sequences) sequences); nothing was allocated"
        case .stageReplaced:
            "the stage was replaced while the step waited for KV room"
        }
    }
}
