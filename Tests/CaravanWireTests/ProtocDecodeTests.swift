import XCTest
import Foundation
import CaravanWire
import ZeroMQ

/// Frames written by CaravanWire decode with Debian's `protoc --decode` (an independent parser).
final class ProtocDecodeTests: XCTestCase {
    private var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// protoc from PATH (Scripts/setup installs it); nil when missing.
    private func protocPath() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin"] {
            let candidate = "\(dir)/protoc"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    private func protocDecode(_ bytes: [UInt8], type: String = "caravan.v1.Envelope", file: String = "caravan/v1/envelope.proto") throws -> String {
        guard let protoc = protocPath() else {
            XCTFail("protoc not found on PATH: run Scripts/setup (apt-get install protobuf-compiler)")
            return ""
        }
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("caravan-wire-\(UUID().uuidString).bin")
        try Data(bytes).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: protoc)
        process.currentDirectoryURL = repoRoot
        process.arguments = ["--decode", type, "-I", "Protos", "Protos/\(file)"]
        process.standardInput = try FileHandle(forReadingFrom: input)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, String(decoding: errors, as: UTF8.self))
        return String(decoding: output, as: UTF8.self)
    }

    func testActivationHeaderFrameDecodesWithProtoc() throws {
        let frames = try WireCodec().encode(try Samples.step(), requestID: 77)
        let text = try protocDecode(frames[0].bytes)
        let crc = CRC32C.checksum(frames[1].bytes)
        for expected in ["protocol_version: 1", "request_id: 77", "activation {", "job_id: \"job-7\"",
                         "plan_epoch: 3", "step_id: 11", "sequence_id: 2", "position: 9", "sample: true",
                         "dtype: DTYPE_F16", "shape: 2", "shape: 4", "byte_length: 16", "crc32c: \(crc)"] {
            XCTAssertTrue(text.contains(expected), "missing '\(expected)' in:\n\(text)")
        }
    }

    func testControlMessagesDecodeWithProtoc() throws {
        let frames = try WireCodec().encode(.stageAssignment(Samples.stageAssignment))
        let text = try protocDecode(frames[0].bytes)
        for expected in ["stage_assignment {", "sha256: \"\(Samples.sha)\"", "layer_end: 15",
                         "next_hop_address: \"tcp://10.0.0.6:7001\"", "activation_dtype: DTYPE_F16",
                         "max_context_tokens: 2048"] {
            XCTAssertTrue(text.contains(expected), "missing '\(expected)' in:\n\(text)")
        }
        let submit = try WireCodec().encode(Samples.bodies[7])
        let submitText = try protocDecode(submit[0].bytes)
        XCTAssertTrue(submitText.contains("content: \"Hello there\""), submitText)
        XCTAssertTrue(submitText.contains("seed: 7"), submitText)
    }

    func testModelChunkHeaderDecodesWithProtoc() throws {
        let payload = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 31) }
        let frames = try WireCodec().encode(ModelChunkData(sha256: Samples.sha, offset: 1 << 20, payload: Message(payload)),
                                            requestID: 1_004)
        XCTAssertEqual(frames.count, 2)
        XCTAssertEqual(frames[1].bytes, payload)
        let text = try protocDecode(frames[0].bytes)
        for expected in ["request_id: 1004", "model_chunk {", "sha256: \"\(Samples.sha)\"", "offset: 1048576",
                         "length: 300", "crc32c: \(CRC32C.checksum(payload))"] {
            XCTAssertTrue(text.contains(expected), "missing '\(expected)' in:\n\(text)")
        }
    }
}
