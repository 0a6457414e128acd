import CaravanCore
import XCTest
@testable import CaravanCLI

/// `caravan`'s flags: sampling options into ``SamplingParameters`` and where a job runs.
final class CaravanCommandTests: XCTestCase {
    func testSamplingFlagsBecomeTheParameters() throws {
        let options = try SamplingOptions.parse(["-n", "9", "--temperature", "0", "--top-k", "5", "--repeat-penalty", "1.1",
                                                 "--repeat-last-n=-1", "--presence-penalty", "0.5", "--seed", "7",
                                                 "--stop", "a", "--stop", "b"])
        let p = options.parameters
        XCTAssertEqual(p.maxTokens, 9)
        XCTAssertEqual(p.temperature, 0)
        XCTAssertEqual(p.topK, 5)
        XCTAssertEqual(p.repeatPenalty, 1.1)
        XCTAssertEqual(p.repeatLastN, -1)
        XCTAssertEqual(p.presencePenalty, 0.5)
        XCTAssertEqual(p.seed, 7)
        XCTAssertEqual(p.stop, ["a", "b"])
        for bad in [["--top-p", "0"], ["--frequency-penalty", "3"], ["-n", "0"], ["--stop", ""]] {
            XCTAssertThrowsError(try SamplingOptions.parse(bad), "\(bad)")
        }
    }

    func testACoordinatorNeedsItsKeyOrInsecure() throws {
        XCTAssertThrowsError(try CoordinatorOptions.parse(["--coordinator", "tcp://h:1", "--coordinator-key", "short"]))
        XCTAssertEqual(try CoordinatorOptions.parse(["--coordinator", "tcp://h:1", "--insecure"]).endpoint, "tcp://h:1")
        XCTAssertThrowsError(try GenerateCommand.parse(["--prompt", "x", "--coordinator", "tcp://h:1", "--insecure", "--top-p", "2"]))
    }
}
