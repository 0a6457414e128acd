/// Bounds on what one render may build and do. A chat template comes from a model file, so it is
/// input: without them `{{ 'x' * 10**12 }}`, `range(2**62)`, two nested `range(100000)` loops or a
/// namespace that holds itself trap, hang or exhaust memory. Real templates stay far below every
/// limit; a template that reaches one fails with `ChatTemplateError.render`.
enum RenderLimits {
    /// Most bytes of any string a render builds, its output included.
    static let maxBytes = ChatTemplate.maxOutputBytes
    /// Most elements of any list a render builds.
    static let maxElements = 1 << 20
    /// Most statements and loop iterations one render executes.
    static let maxSteps = 1_000_000
    /// Most lists, dicts and namespaces one nesting check visits: values share their parts
    /// (`[a, a]` in a loop doubles the paths, not the memory), so the check is bounded too.
    static let maxVisits = 100_000
    /// Deepest nesting of lists, dicts and namespaces that is printed or serialized.
    static let maxNesting = 64

    /// Throws unless a string of `bytes` UTF-8 bytes is within ``maxBytes``.
    static func checkString(_ bytes: Int, _ pos: SourcePosition?) throws(ChatTemplateError) {
        guard bytes <= maxBytes else {
            throw .render(message: "the template builds a string of \(bytes) bytes (at most \(maxBytes))", position: pos)
        }
    }

    /// Throws unless a list of `count` elements is within ``maxElements``.
    static func checkList(_ count: Int, _ pos: SourcePosition?) throws(ChatTemplateError) {
        guard count <= maxElements else {
            throw .render(message: "the template builds a list of \(count) elements (at most \(maxElements))", position: pos)
        }
    }

    /// `count` (negative counts as 0, as in Python) copies of something `unit` long, checked
    /// against `limit` before anything is built.
    static func repetitions(_ count: Int, of unit: Int, limit: Int, _ pos: SourcePosition?) throws(ChatTemplateError) -> Int {
        let n = max(0, count)
        let (total, overflow) = n.multipliedReportingOverflow(by: max(0, unit))
        guard !overflow, total <= limit else {
            throw .render(message: "the template repeats \(unit) units \(count) times (at most \(limit) in all)", position: pos)
        }
        return n
    }

    /// The number of elements of `range(start, stop, step)` (`step` non-zero), computed without
    /// building it; throws when it exceeds ``maxElements``.
    static func rangeCount(start: Int, stop: Int, step: Int, _ pos: SourcePosition?) throws(ChatTemplateError) -> Int {
        // Work in magnitudes so that no difference of two Ints can overflow.
        let ascending = step > 0
        guard ascending ? start < stop : start > stop else { return 0 }
        let span = ascending ? UInt(bitPattern: stop &- start) : UInt(bitPattern: start &- stop)
        let count = (span - 1) / step.magnitude + 1
        guard count <= UInt(maxElements) else {
            throw .render(message: "range() of \(count) elements is too large (at most \(maxElements))", position: pos)
        }
        return Int(count)
    }
}

extension Value {
    /// Whether lists, tuples, dicts and namespaces nest deeper than `limit` inside this value (a
    /// namespace that holds itself nests without end), or hold more than
    /// ``RenderLimits/maxVisits`` of them counted along every path (shared parts count each
    /// time they are reached).
    func nests(deeperThan limit: Int) -> Bool {
        var visits = 0
        return nests(deeperThan: limit, visits: &visits)
    }

    private func nests(deeperThan limit: Int, visits: inout Int) -> Bool {
        switch self {
        case .array, .tuple, .dict, .namespace:
            visits += 1
            guard limit >= 0, visits <= RenderLimits.maxVisits else { return true }
        default:
            return false
        }
        switch self {
        case .array(let a), .tuple(let a): return a.contains { $0.nests(deeperThan: limit - 1, visits: &visits) }
        case .dict(let d): return d.pairs.contains { $0.1.nests(deeperThan: limit - 1, visits: &visits) }
        case .namespace(let n): return n.attributes.pairs.contains { $0.1.nests(deeperThan: limit - 1, visits: &visits) }
        default: return false
        }
    }
}
