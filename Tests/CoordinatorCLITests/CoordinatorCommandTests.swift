import Coordinator
import XCTest
@testable import CoordinatorCLI

/// `caravan-coordinator`'s flags: what is refused before anything starts, and how the options
/// become a ``CoordinatorConfiguration``.
final class CoordinatorCommandTests: XCTestCase {
    func testBadFlagsAreRefusedBeforeAnythingStarts() {
        for bad in [["--activation-dtype", "f64"], ["--heartbeat-interval", "3", "--heartbeat-timeout", "2"],
                    ["--slow-factor", "1"], ["--lanes", "-1"], ["--max-jobs", "0"], ["--metrics", "nowhere"],
                    ["--log-level", "loud"], ["--queue-timeout", "1e9"]] {
            XCTAssertThrowsError(try CoordinatorCommand.parse(["--model", "m.gguf"] + bad), "\(bad)")
        }
        XCTAssertThrowsError(try CoordinatorCommand.parse([]), "--model is required")
    }

    func testOptionsBecomeTheConfiguration() throws {
        let command = try CoordinatorCommand.parse([
            "--model", "m.gguf", "--workers", "3", "--activation-dtype", "f16", "--ctx", "4096", "--lanes", "5",
            "--heartbeat-interval", "0.5", "--heartbeat-timeout", "3", "--queue-timeout", "12.5", "--state-dir", "none",
            "--rebalance-interval", "0", "--connection-grace", "0.4", "--max-jobs", "7", "--max-jobs-per-client", "2",
        ])
        let c = command.configuration(security: .plain, access: nil)
        XCTAssertEqual(c.modelPath, "m.gguf")
        XCTAssertEqual(c.expectedWorkers, 3)
        XCTAssertEqual(c.activationDType, .f16)
        XCTAssertEqual(c.contextTokens, 4096)
        XCTAssertEqual(c.lanes, 5)
        XCTAssertEqual(c.heartbeatInterval, .milliseconds(500))
        XCTAssertEqual(c.heartbeatTimeout, .seconds(3))
        XCTAssertEqual(c.queueTimeout, .milliseconds(12_500))
        XCTAssertNil(c.stateDirectory, "'none' keeps jobs in memory")
        XCTAssertFalse(c.rebalance.enabled, "0 turns slow-worker re-planning off")
        XCTAssertEqual(c.connectionGrace, .milliseconds(400))
        XCTAssertEqual(c.maxUnfinishedJobs, 7)
        XCTAssertEqual(c.maxJobsPerClient, 2)
        XCTAssertNil(c.access)
        let defaults = try CoordinatorCommand.parse(["--model", "m.gguf"]).configuration(security: .plain, access: nil)
        XCTAssertNil(defaults.lanes, "0 lanes: automatic")
        XCTAssertEqual(defaults.activationDType, .f32)
        XCTAssertTrue(defaults.rebalance.enabled)
        XCTAssertNil(defaults.connectionGrace)
    }
}
