import CKernels
import CaravanCore

/// The element type a stage's outputs travel in to the next stage, and so the type it keeps them
/// in: kept rows are the exact values the next stage received.
public enum OutputPrecision: Sendable, Equatable {
    /// 32-bit floats (kept as they are).
    case f32
    /// 16-bit floats (kept rounded to F16, as the next stage read them).
    case f16

    /// Bytes per element.
    public var byteCount: Int { self == .f32 ? 4 : 2 }
}

/// The hidden states a stage sent on, per sequence and position, `[positions][width]` in the
/// stage's ``OutputPrecision``: what a re-plan needs to recompute only the layers that were lost
/// (the new owner of the layers after this stage's range starts from them; this stage forwards
/// them again instead of recomputing its own layers).
///
/// Bounded: the buffers of all sequences hold at most `limit` positions (allocated capacity, not
/// only filled rows); a sequence that would go beyond evicts the sequences not in the current
/// step, the largest first, or, when that is not enough, is not kept at all.
final class KeptOutputs {
    /// One sequence's rows.
    final class Rows {
        /// Positions `[0, length)` are filled.
        var length = 0
        private(set) var capacity = 0
        private(set) var storage: UnsafeMutableRawPointer?

        deinit { storage?.deallocate() }

        /// Grows to at least `positions` (keeping the filled rows), at most `limit`.
        func reserve(_ positions: Int, rowBytes: Int, limit: Int) {
            guard positions > capacity else { return }
            let newCapacity = min(limit, max(positions, max(64, capacity * 2)))
            let grown = UnsafeMutableRawPointer.allocate(byteCount: max(1, newCapacity * rowBytes), alignment: 64)
            if let storage {
                grown.copyMemory(from: storage, byteCount: length * rowBytes)
                storage.deallocate()
            }
            storage = grown
            capacity = newCapacity
        }
    }

    /// Floats per row (the model's hidden size).
    let width: Int
    /// Most positions per sequence.
    let contextLimit: Int
    /// Element type of the kept rows.
    private(set) var precision: OutputPrecision = .f32
    /// Most positions (allocated) over all sequences; 0 keeps nothing.
    var limit: Int
    private(set) var rows: [SequenceID: Rows] = [:]

    init(width: Int, contextLimit: Int, limit: Int) {
        self.width = width
        self.contextLimit = contextLimit
        self.limit = limit
    }

    private var rowBytes: Int { width * precision.byteCount }

    /// Switches the element type; rows kept in another type are dropped (they are not what the
    /// next stage will read).
    func setPrecision(_ p: OutputPrecision) {
        guard p != precision else { return }
        rows.removeAll()
        precision = p
    }

    /// Filled positions of `id` (0 if none kept).
    func length(of id: SequenceID) -> Int { rows[id]?.length ?? 0 }

    /// Positions allocated over all sequences.
    var allocatedPositions: Int { rows.values.reduce(0) { $0 + $1.capacity } }

    /// Bytes allocated.
    var byteCount: Int { allocatedPositions * rowBytes }

    /// Drops the rows of `id`.
    func remove(_ id: SequenceID) { rows[id] = nil }

    /// Keeps positions `[0, length)` of `id`.
    func truncate(_ id: SequenceID, to length: Int) {
        guard let r = rows[id] else { return }
        r.length = min(r.length, max(0, length))
    }

    /// Keeps `count` rows (`values`, `[count, width]` floats) of `id` at positions
    /// `[position, position + count)`, dropping what was kept after them, except the rows below
    /// `preserving` (of a sequence still being replayed: rows kept earlier that later steps
    /// forward). Sequences in `protected` (the rest of the step) are not evicted to make room.
    func store(_ id: SequenceID, position: Int, count: Int, values: UnsafePointer<Float>, protected: Set<SequenceID>,
               preserving: Int = 0) {
        let end = position + count
        guard count > 0, end <= contextLimit else { return }
        let existing = rows[id]
        guard existing == nil ? position == 0 : position <= existing!.length else {
            // A gap: the rows before `position` were never kept here.
            rows[id] = nil
            return
        }
        let r = existing ?? Rows()
        let grownCapacity = end > r.capacity ? min(contextLimit, max(end, max(64, r.capacity * 2))) : r.capacity
        if !makeRoom(adding: grownCapacity - r.capacity, for: id, protected: protected) {
            rows[id] = nil
            return
        }
        let previous = r.length
        r.length = min(r.length, position)
        r.reserve(end, rowBytes: rowBytes, limit: contextLimit)
        let base = r.storage! + position * rowBytes
        switch precision {
        case .f32:
            base.copyMemory(from: values, byteCount: count * width * 4)
        case .f16:
            ck_f32_to_f16(values, base.assumingMemoryBound(to: UInt16.self), Int64(count * width))
        }
        r.length = max(end, min(previous, preserving))
        rows[id] = r
    }

    /// Writes the kept row of `id` at `position` (which must be below its length) into `out`
    /// (`width` floats).
    func read(_ id: SequenceID, position: Int, into out: UnsafeMutablePointer<Float>) {
        let r = rows[id]!
        precondition(position < r.length, "a kept row")
        let row = r.storage! + position * rowBytes
        switch precision {
        case .f32: out.update(from: row.assumingMemoryBound(to: Float.self), count: width)
        case .f16: ck_f16_to_f32(row.assumingMemoryBound(to: UInt16.self), out, Int64(width))
        }
    }

    /// Evicts other sequences (not `id`, not `protected`), largest first, until `positions` more
    /// fit under the limit; false when they cannot.
    private func makeRoom(adding positions: Int, for id: SequenceID, protected: Set<SequenceID>) -> Bool {
        guard positions > 0 else { return true }
        guard positions <= limit else { return false }
        var used = allocatedPositions
        guard used + positions > limit else { return true }
        let victims = rows.filter { $0.key != id && !protected.contains($0.key) }.sorted { $0.value.capacity > $1.value.capacity }
        for (victim, r) in victims where used + positions > limit {
            used -= r.capacity
            rows[victim] = nil
        }
        return used + positions <= limit
    }

    /// Hands the rows of `id` over to `other` (same width and precision), up to `length`
    /// positions; sequences in `protected` are not evicted there to make room.
    func move(_ id: SequenceID, to other: KeptOutputs, length: Int, protected: Set<SequenceID>) {
        guard let r = rows.removeValue(forKey: id), other.width == width, other.precision == precision else { return }
        r.length = min(r.length, length)
        guard r.length > 0, other.makeRoom(adding: r.capacity, for: id, protected: protected) else { return }
        other.rows[id] = r
    }
}
