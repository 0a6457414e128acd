import Foundation
import XCTest
import TestSupport
@testable import GGUF

/// Truncated and corrupted files give errors that name the file, never a crash.
final class GGUFCorruptionTests: XCTestCase {
    private func sample() -> [UInt8] {
        var b = GGUFBuilder()
        b.set("general.architecture", .string("llama"))
        b.set("x.names", .strings(["alpha", "beta", "gamma"]))
        b.addF32("a.weight", dims: [8, 4], values: (0..<32).map(Float.init))
        b.addF32("b.weight", dims: [8], values: (0..<8).map(Float.init))
        return b.build()
    }

    private func open(_ bytes: [UInt8]) throws -> GGUFFile {
        try GGUFFile(path: TempFiles.write(bytes, name: "corrupt.gguf"))
    }

    func testEveryTruncationIsAnError() throws {
        let bytes = sample()
        _ = try open(bytes)  // the intact file opens
        for cut in stride(from: 0, to: bytes.count, by: 3) {
            XCTAssertThrowsError(try open(Array(bytes[..<cut])), "cut at \(cut)") { error in
                guard let e = error as? GGUFError else { return XCTFail("untyped error \(error)") }
                XCTAssertTrue(e.description.contains("corrupt.gguf"), e.description)
            }
        }
    }

    func testRandomByteFlipsNeverCrash() throws {
        let bytes = sample()
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var b = bytes
            for _ in 0..<3 { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            _ = try? open(b)  // must either open or throw, never trap
        }
    }

    func testBadMagicAndVersion() throws {
        var b = sample()
        b[0] = 0x47; b[1] = 0x47; b[2] = 0x4d; b[3] = 0x4c
        XCTAssertThrowsError(try open(b)) { XCTAssertTrue("\($0)".contains("not a GGUF file")) }
        b = sample()
        b[4] = 9
        XCTAssertThrowsError(try open(b)) { XCTAssertTrue("\($0)".contains("unsupported GGUF version 9")) }
    }

    func testUnknownTensorTypeAndOutOfBounds() throws {
        var builder = GGUFBuilder()
        builder.addTensor("w", type: 77, dims: [32], data: [UInt8](repeating: 0, count: 64))
        XCTAssertThrowsError(try open(builder.build())) { error in
            XCTAssertEqual(error as? GGUFError, .unknownTensorType(path: (error as! GGUFError).path, tensor: "w", type: 77))
        }
        // A tensor whose bytes run past the end of the file.
        builder = GGUFBuilder()
        builder.addF32("w", dims: [64], values: [Float](repeating: 1, count: 64))
        let full = builder.build()
        XCTAssertThrowsError(try open(Array(full.dropLast(16)))) { error in
            XCTAssertTrue("\(error)".contains("lies outside the file"), "\(error)")
        }
    }

    func testMissingFile() {
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/model.gguf"))
        }
    }
}

extension GGUFError {
    /// The file path carried by every case (test helper).
    var path: String {
        switch self {
        case let .cannotOpen(p, _), let .notGGUF(p), let .unsupportedVersion(p, _), let .truncated(p, _, _),
             let .corrupt(p, _), let .unknownTensorType(p, _, _), let .tensorOutOfBounds(p, _),
             let .missingMetadata(p, _), let .missingTensor(p, _), let .badTensorShape(p, _, _, _),
             let .unsupportedArchitecture(p, _):
            return p
        }
    }
}
