import CaravanCore
import CaravanWire
import SwiftProtobuf
import XCTest
@testable import CaravanctlCLI

/// `caravanctl`'s own logic: the watch screen's frames, and the JSON it prints of the typed
/// reports it gets from `CaravanClient` (their wire form, with the .proto field names).
final class CaravanctlTests: XCTestCase {
    func testFramesRedrawInPlaceOnATerminalAndFollowEachOtherElsewhere() {
        XCTAssertEqual(StatusScreen.frame("a\nb", terminal: false, first: true), "a\nb\n")
        XCTAssertEqual(StatusScreen.frame("a\n", terminal: false, first: false), "\na\n")
        XCTAssertEqual(StatusScreen.frame("a\nb", terminal: true, first: true), "\u{1B}[2J\u{1B}[Ha\u{1B}[K\nb\u{1B}[K\u{1B}[J")
        XCTAssertEqual(StatusScreen.frame("a", terminal: true, first: false), "\u{1B}[Ha\u{1B}[K\u{1B}[J")
    }

    func testJSONIsTheWireFormOfTheTypedReport() throws {
        let report = ClusterReport(planEpoch: 3, workers: [WorkerReport(workerID: "w1", state: .ready, layers: LayerRange(0, 4))],
                                   jobs: [JobStatus(job: JobID("job-1")!, state: .generating, completionTokens: 5)],
                                   serving: true)
        let json = try Caravan_V1_ClusterStatus(report).jsonString(options: jsonOptions)
        XCTAssertTrue(json.contains(#""plan_epoch":3"#), json)
        XCTAssertTrue(json.contains(#""worker_id":"w1""#), json)
        XCTAssertTrue(json.contains(#""layer_end":4"#), json)
        XCTAssertTrue(json.contains(#""state":"JOB_STATE_GENERATING""#), json)
        let preview = try Caravan_V1_PlanPreview(PlanPreview(feasible: false, reason: "no workers")).jsonString(options: jsonOptions)
        XCTAssertEqual(preview, #"{"reason":"no workers"}"#)
    }
}
