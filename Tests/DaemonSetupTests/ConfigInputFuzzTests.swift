import CaravanTransport
import DaemonSetup
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Mutated operator inputs — config files, join tokens, key files — each parse or fail with their
/// typed error (the functions are typed-throwing, so reaching the end of a case without a trap is
/// the property), within time.
final class ConfigInputFuzzTests: XCTestCase {
    private func timed(_ what: String, _ i: Int, _ run: FuzzRun, _ body: () -> Void) {
        let started = ContinuousClock.now
        body()
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "\(what) case \(i) (seed \(run.seed(ofCase: i)))")
    }

    func testMutatedConfigFilesParseOrFailClearly() {
        let run = FuzzRun(short: 3000, salt: 5)
        let seed = Array("""
            # coordinator
            model = /models/m.gguf
            --workers = 2
            ctx = "4096"
            open-clients = true
            insecure = false
            authorized-workers = /etc/caravan/authorized_workers

            """.utf8)
        var parsed = 0
        for i in run.cases {
            var rng = SplitMix(seed: run.seed(ofCase: i))
            var bytes = ByteMutator.mutate(seed, &rng)
            if rng.oneIn(10) { bytes += [UInt8](repeating: rng.pick([0x3D, 0x0A, 0x22, 0x2D]), count: rng.pick([1000, 100_000])) }
            let text = String(decoding: bytes, as: UTF8.self)
            timed("config", i, run) {
                do throws(ConfigFileError) {
                    let file = try ConfigFile.parse(text, name: "fuzz.conf")
                    _ = file.merged(with: ["--workers", "3", "--x=1"])
                    parsed += 1
                } catch {
                    XCTAssertTrue(error.description.hasPrefix("fuzz.conf:"), error.description)
                }
            }
        }
        XCTAssertGreaterThan(parsed, 0)
    }

    func testMutatedJoinTokensParseOrFailClearly() throws {
        let run = FuzzRun(short: 3000, salt: 6)
        let valid = try JoinToken(control: "tcp://10.0.0.1:7000", clients: "tcp://10.0.0.1:7100",
                                  coordinatorKey: "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7").text
        let json = Array(#"{"control":"tcp://10.0.0.1:7000","clients":"tcp://h:1","coordinator_key":"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"}"#.utf8)
        var accepted = 0
        for i in run.cases {
            var rng = SplitMix(seed: run.seed(ofCase: i))
            let text: String
            if rng.oneIn(2) {
                text = String(decoding: ByteMutator.mutate(Array(valid.utf8), &rng), as: UTF8.self)
            } else {
                // A well-encoded token around mutated JSON: the fields' checks are what is tested.
                let body = Data(ByteMutator.mutate(json, &rng)).base64EncodedString()
                    .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                    .replacingOccurrences(of: "=", with: "")
                text = JoinToken.prefix + body
            }
            timed("join token", i, run) {
                do throws(JoinTokenError) {
                    let token = try JoinToken(parsing: text)
                    XCTAssertTrue(token.control.hasPrefix("tcp://"))
                    accepted += 1
                } catch {
                    XCTAssertFalse(error.description.isEmpty)
                }
            }
        }
        XCTAssertGreaterThan(accepted, 0)
    }

    func testMutatedKeyFilesLoadOrFailClearly() throws {
        let run = FuzzRun(short: 1000, salt: 7)
        let keys = try CurveKeyPair.generate()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-key-fuzz-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var loaded = 0
        for i in run.cases {
            var rng = SplitMix(seed: run.seed(ofCase: i))
            var bytes = ByteMutator.mutate(Array((keys.secretKey + "\n").utf8), &rng)
            if rng.oneIn(20) { bytes += [UInt8](repeating: 0x41, count: 10_000) }
            let path = directory.appendingPathComponent("k\(i % 8).key").path
            unlink(path)
            try Self.write(bytes, to: path)
            timed("key file", i, run) {
                do throws(ClusterSecurity.KeyFileError) {
                    let pair = try ClusterSecurity.keyPair(file: path)
                    XCTAssertEqual(pair.publicKey.utf8.count, 40)
                    loaded += 1
                } catch {
                    XCTAssertTrue(error.description.contains(path), error.description)
                }
            }
        }
        XCTAssertGreaterThan(loaded, 0)
    }

    /// Writes `bytes` to a new file with mode 0600 in one `open`/`write`, failing with the errno:
    /// `FileManager.createFile` returns false without a reason (a long run on a full disk failed
    /// 401 cases that way and could not say why).
    private static func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            written += n
        }
    }
}
