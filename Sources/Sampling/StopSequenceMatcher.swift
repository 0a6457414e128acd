/// Result of feeding one piece of text to a `StopSequenceMatcher`.
public struct StopMatchResult: Sendable, Equatable {
    /// Text that is safe to emit now.
    public var text: String
    /// The stop string that was hit, if any. After a hit, generation should end; `text` holds
    /// everything before the stop string.
    public var stop: String?

    /// Creates a result.
    public init(text: String, stop: String? = nil) {
        self.text = text
        self.stop = stop
    }

    /// Whether a stop string was hit.
    public var isStopped: Bool { stop != nil }
}

/// Finds stop strings in streamed text.
///
/// Each fed piece returns the text that can be shown now: a trailing part that could still turn
/// into a stop string is held back until later pieces decide it. When a stop string appears, the
/// text before it is returned together with the stop string, and all later input is ignored.
/// Matching is on Unicode scalars, so a stop such as `"\n"` is found inside `"\r\n"`.
public struct StopSequenceMatcher: Sendable {
    /// The stop strings (empty strings are ignored).
    public let stops: [String]
    private let stopScalars: [[Unicode.Scalar]]
    private var pending: [Unicode.Scalar] = []
    /// The stop string that was hit, once one was.
    public private(set) var hitStop: String?

    /// Creates a matcher for `stops`.
    public init(stops: [String]) {
        self.stops = stops
        self.stopScalars = stops.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
    }

    /// Whether a stop string has been hit.
    public var isStopped: Bool { hitStop != nil }

    /// Text currently held back (a possible beginning of a stop string).
    public var heldBack: String { Self.string(pending[...]) }

    /// Feeds the next piece of generated text.
    public mutating func feed(_ piece: String) -> StopMatchResult {
        guard hitStop == nil else { return StopMatchResult(text: "", stop: hitStop) }
        pending.append(contentsOf: piece.unicodeScalars)
        // Earliest occurrence of any stop; at equal start the longest stop wins.
        var best: (start: Int, index: Int)?
        for (index, stop) in stopScalars.enumerated() {
            guard let start = Self.firstOccurrence(of: stop, in: pending) else { continue }
            if let b = best {
                if start < b.start || (start == b.start && stop.count > stopScalars[b.index].count) {
                    best = (start, index)
                }
            } else {
                best = (start, index)
            }
        }
        if let b = best {
            let text = Self.string(pending[..<b.start])
            pending.removeAll()
            let stop = Self.string(stopScalars[b.index][...])
            hitStop = stop
            return StopMatchResult(text: text, stop: stop)
        }
        let hold = heldBackLength()
        let emitCount = pending.count - hold
        let text = Self.string(pending[..<emitCount])
        pending.removeFirst(emitCount)
        return StopMatchResult(text: text)
    }

    /// Ends the stream without a stop: returns (and clears) the held-back text. After a stop was
    /// hit this returns "".
    public mutating func finish() -> String {
        guard hitStop == nil else { return "" }
        let text = Self.string(pending[...])
        pending.removeAll()
        return text
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of some stop string.
    private func heldBackLength() -> Int {
        var longest = 0
        for stop in stopScalars {
            let maxLength = min(stop.count - 1, pending.count)
            guard maxLength > longest else { continue }
            for length in stride(from: maxLength, to: longest, by: -1) {
                if pending[(pending.count - length)...].elementsEqual(stop[..<length]) {
                    longest = length
                    break
                }
            }
        }
        return longest
    }

    private static func firstOccurrence(of needle: [Unicode.Scalar], in haystack: [Unicode.Scalar]) -> Int? {
        guard !needle.isEmpty, needle.count <= haystack.count else { return nil }
        for start in 0...(haystack.count - needle.count)
        where haystack[start] == needle[0] && haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }

    private static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
