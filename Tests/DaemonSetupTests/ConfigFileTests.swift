import DaemonSetup
import Foundation
import XCTest

final class ConfigFileTests: XCTestCase {
    func testParsesKeysValuesFlagsAndRepeatsAndTheCommandLineWins() throws {
        let text = """
            # a worker
            coordinator = tcp://10.0.0.1:7000
              coordinator-key = "a=b c"
            model = /m/a.gguf
            model = /m/b.gguf
            insecure = false
            threads=2

            --log-level = debug
            """
        let file = try ConfigFile.parse(text, name: "w.conf")
        XCTAssertEqual(file.entries.map(\.key), ["coordinator", "coordinator-key", "model", "model", "insecure", "threads", "log-level"])
        XCTAssertEqual(file.entries[1].value, "a=b c")
        XCTAssertEqual(file.entries[6].line, 9)
        XCTAssertEqual(file.merged(with: ["--threads", "1"]), [
            "--coordinator=tcp://10.0.0.1:7000", "--coordinator-key=a=b c", "--model=/m/a.gguf",
            "--model=/m/b.gguf", "--log-level=debug", "--threads", "1",
        ])
        // A key may start with '-' (Z85): the `=` form keeps it a value.
        XCTAssertEqual(try ConfigFile.parse("coordinator-key = -R*X.q]u#xLE#nUP=QZ57&4T+I<yD2k*E3T[s$y@", name: "k").merged(with: []),
                       ["--coordinator-key=-R*X.q]u#xLE#nUP=QZ57&4T+I<yD2k*E3T[s$y@"])
        // A repeatable option on the command line replaces all of the file's values.
        XCTAssertFalse(file.merged(with: ["--model=/x.gguf"]).contains("/m/a.gguf"))
        let flag = try ConfigFile.parse("insecure = TRUE", name: "c")
        XCTAssertEqual(flag.merged(with: []), ["--insecure"])
    }

    func testBadLinesNameTheFileAndLine() {
        for (text, expected) in [("a = 1\nno equals sign", "c.conf:2:"), ("bad key! = 1", "not an option name"),
                                 ("config = other.conf", "cannot name another")] {
            XCTAssertThrowsError(try ConfigFile.parse(text, name: "c.conf")) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }

    func testExpandReadsTheFileNamedByConfig() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-config-\(getpid()).conf")
        try "workers = 3\nctx = 512\n".write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertEqual(try ConfigFile.expand(["--config", url.path, "--ctx", "1024"]),
                       ["--workers=3", "--config", url.path, "--ctx", "1024"])
        XCTAssertEqual(try ConfigFile.expand(["--ctx", "9"]), ["--ctx", "9"])
        XCTAssertThrowsError(try ConfigFile.expand(["--config=/nonexistent/caravan.conf"]))
        XCTAssertThrowsError(try ConfigFile.expand(["--config"]))
        XCTAssertThrowsError(try ConfigFile.expand(["--config", url.path], knownKeys: ["workers"])) { error in
            XCTAssertTrue("\(error)".contains(":2: unknown option 'ctx'"), "\(error)")
        }
        XCTAssertEqual(ConfigFile.optionNames(inHelp: "  --model <m>  The file.\n  --memory-limit-mib <n>, -h, --help, -- x"),
                       ["model", "memory-limit-mib", "help"])
    }
}
