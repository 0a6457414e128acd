import XCTest
@testable import Sampling

final class StopSequenceMatcherTests: XCTestCase {
    /// Feeds the pieces, returning everything emitted and the stop hit.
    private func run(_ stops: [String], _ pieces: [String]) -> (emitted: [String], stop: String?, rest: String) {
        var m = StopSequenceMatcher(stops: stops)
        var emitted: [String] = []
        var stop: String?
        for piece in pieces {
            let r = m.feed(piece)
            emitted.append(r.text)
            if r.isStopped { stop = r.stop; break }
        }
        return (emitted, stop, m.finish())
    }

    func testNoStopsPassesThrough() {
        let r = run([], ["Hello", " world"])
        XCTAssertEqual(r.emitted, ["Hello", " world"])
        XCTAssertNil(r.stop)
        XCTAssertEqual(r.rest, "")
    }

    func testStopSplitAcrossPieces() {
        let r = run(["<|im_end|>"], ["Hi there", "<|im", "_en", "d|>", "ignored"])
        XCTAssertEqual(r.emitted, ["Hi there", "", "", ""])
        XCTAssertEqual(r.stop, "<|im_end|>")
        XCTAssertEqual(r.rest, "")
    }

    func testHeldBackTextReleasedWhenItDiverges() {
        var m = StopSequenceMatcher(stops: ["STOP"])
        XCTAssertEqual(m.feed("abc ST").text, "abc ")
        XCTAssertEqual(m.heldBack, "ST")
        XCTAssertEqual(m.feed("ART").text, "START")
        XCTAssertEqual(m.feed("S").text, "")
        XCTAssertEqual(m.finish(), "S")
        XCTAssertFalse(m.isStopped)
    }

    func testTextBeforeStopInSamePieceIsEmitted() {
        var m = StopSequenceMatcher(stops: ["\n\n", "User:"])
        XCTAssertEqual(m.feed("Answer: 4").text, "Answer: 4")
        let r = m.feed(".\n\nmore")
        XCTAssertEqual(r, StopMatchResult(text: ".", stop: "\n\n"))
        XCTAssertEqual(m.feed("x"), StopMatchResult(text: "", stop: "\n\n"))
        XCTAssertEqual(m.finish(), "")
    }

    func testEarliestStopWins() {
        let r = run(["world", "lo w"], ["hello world"])
        XCTAssertEqual(r.emitted, ["hel"])
        XCTAssertEqual(r.stop, "lo w")
    }

    func testOverlappingPrefixes() {
        // "aab" must be found even though a partial "aa" match fails first.
        let r = run(["aab"], ["xa", "a", "a", "b", "c"])
        XCTAssertEqual(r.emitted, ["x", "", "a", ""])
        XCTAssertEqual(r.stop, "aab")
    }

    func testScalarMatchingInsideCRLF() {
        let r = run(["\n"], ["line\r", "\nnext"])
        XCTAssertEqual(r.stop, "\n")
        XCTAssertEqual(r.emitted.joined(), "line\r")
    }

    func testUnicodeStops() {
        let r = run(["→end"], ["α β →", "en", "d!"])
        XCTAssertEqual(r.emitted.joined(), "α β ")
        XCTAssertEqual(r.stop, "→end")
    }
}
