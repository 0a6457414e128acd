import DaemonSetup
import Worker
import XCTest
@testable import WorkerCLI

/// `caravan-worker`'s flags: where the coordinator is (flags or a join token), what is refused,
/// and how the options become a ``WorkerConfiguration``.
final class WorkerCommandTests: XCTestCase {
    private let key = String(repeating: "k", count: 40)

    func testTheCoordinatorComesFromFlagsOrAJoinTokenNotBoth() throws {
        let token = try JoinToken(control: "tcp://10.0.0.1:7000", coordinatorKey: key).text
        let joined = try WorkerCommand.parse(["--join", token]).coordinatorAddress()
        XCTAssertEqual(joined.endpoint, "tcp://10.0.0.1:7000")
        XCTAssertEqual(joined.key, key)
        let flags = try WorkerCommand.parse(["--coordinator", "tcp://h:1", "--coordinator-key", key]).coordinatorAddress()
        XCTAssertEqual(flags.endpoint, "tcp://h:1")
        XCTAssertEqual(flags.key, key)
        XCTAssertNil(try WorkerCommand.parse(["--coordinator", "tcp://h:1", "--insecure"]).coordinatorAddress().key)
        XCTAssertThrowsError(try WorkerCommand.parse(["--join", token, "--coordinator", "tcp://h:1"]))
        XCTAssertThrowsError(try WorkerCommand.parse(["--join", "caravan9:abc"]))
        XCTAssertThrowsError(try WorkerCommand.parse(["--coordinator", "tcp://h:1"]), "no key and not --insecure")
        XCTAssertThrowsError(try WorkerCommand.parse([]), "no coordinator")
    }

    func testBadFlagsAreRefused() {
        for bad in [["--pull-connections", "9"], ["--cache-keep-days", "-1"], ["--speed", "2e9"], ["--id", ""],
                    ["--memory-limit-mib", "2199023255553"], ["--metrics", "nowhere"], ["--log-level", "loud"],
                    ["--standby-start-delay", "-1"], ["--standby-start-delay", "nan"], ["--kv-release-grace", "61"],
                    ["--mirror-flush-interval", "11"]] {
            XCTAssertThrowsError(try WorkerCommand.parse(["--coordinator", "tcp://h:1", "--insecure"] + bad), "\(bad)")
        }
    }

    func testOptionsBecomeTheConfiguration() throws {
        let command = try WorkerCommand.parse([
            "--coordinator", "tcp://h:1", "--insecure", "--model", "a.gguf", "--model", "b.gguf", "--cache-dir", "/c",
            "--cache-keep-days", "0", "--pull-connections", "3", "--memory-limit-mib", "2", "--advertise", "tcp://w:9",
            "--standby-start-delay", "0.25", "--kv-release-grace", "0.05", "--mirror-flush-interval", "0",
        ])
        let c = command.configuration(workerID: "w1", coordinator: "tcp://h:1", coordinatorKey: nil, security: .plain)
        XCTAssertEqual(c.workerID, "w1")
        XCTAssertEqual(c.coordinatorEndpoint, "tcp://h:1")
        XCTAssertEqual(c.modelPaths, ["a.gguf", "b.gguf"])
        XCTAssertEqual(c.cacheDirectory, "/c")
        XCTAssertNil(c.cacheKeepDays, "0 keeps other models' caches forever")
        XCTAssertEqual(c.pullConnections, 3)
        XCTAssertEqual(c.memoryLimit, 2 << 20)
        XCTAssertEqual(c.advertisedDataEndpoint, "tcp://w:9")
        XCTAssertEqual(c.coordinatorPublicKey, "")
        XCTAssertEqual(c.standbyStartDelay, .milliseconds(250))
        XCTAssertEqual(c.kvReleaseGrace, .milliseconds(50))
        XCTAssertEqual(c.mirrorFlushInterval, .zero)
        let defaults = try WorkerCommand.parse(["--coordinator", "tcp://h:1", "--insecure"])
            .configuration(workerID: "w1", coordinator: "tcp://h:1", coordinatorKey: nil, security: .plain)
        XCTAssertEqual(defaults.standbyStartDelay, .seconds(5), "the standby pull waits 5 s unless told otherwise")
        XCTAssertEqual(defaults.kvReleaseGrace, .milliseconds(500))
        XCTAssertEqual(defaults.mirrorFlushInterval, .milliseconds(100))
    }
}
