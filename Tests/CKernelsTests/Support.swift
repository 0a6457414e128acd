import CKernels
import Foundation
import TestSupport
import XCTest

/// A weight / activation type of the C library, with its ggml name.
struct QType: CustomStringConvertible, Sendable {
    let id: Int32
    let name: String
    var description: String { name }

    static let f32 = QType(id: Int32(CK_TYPE_F32), name: "f32")
    static let f16 = QType(id: Int32(CK_TYPE_F16), name: "f16")
    static let bf16 = QType(id: Int32(CK_TYPE_BF16), name: "bf16")
    static let q4_0 = QType(id: Int32(CK_TYPE_Q4_0), name: "q4_0")
    static let q4_1 = QType(id: Int32(CK_TYPE_Q4_1), name: "q4_1")
    static let q5_0 = QType(id: Int32(CK_TYPE_Q5_0), name: "q5_0")
    static let q5_1 = QType(id: Int32(CK_TYPE_Q5_1), name: "q5_1")
    static let q8_0 = QType(id: Int32(CK_TYPE_Q8_0), name: "q8_0")
    static let q8_1 = QType(id: Int32(CK_TYPE_Q8_1), name: "q8_1")
    static let q2_K = QType(id: Int32(CK_TYPE_Q2_K), name: "q2_K")
    static let q3_K = QType(id: Int32(CK_TYPE_Q3_K), name: "q3_K")
    static let q4_K = QType(id: Int32(CK_TYPE_Q4_K), name: "q4_K")
    static let q5_K = QType(id: Int32(CK_TYPE_Q5_K), name: "q5_K")
    static let q6_K = QType(id: Int32(CK_TYPE_Q6_K), name: "q6_K")
    static let q8_K = QType(id: Int32(CK_TYPE_Q8_K), name: "q8_K")

    /// Every weight type ck_matmul supports.
    static let weightTypes: [QType] = [
        .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
    ]

    var blockElements: Int { Int(ck_block_elements(id)) }
    var blockBytes: Int { Int(ck_block_bytes(id)) }
    func rowBytes(_ n: Int) -> Int { Int(ck_row_bytes(id, Int64(n))) }
    var isKQuant: Bool { blockElements == 256 }
}

/// The instruction sets to test: scalar, plus the best SIMD path when the CPU has one (on an
/// AVX-512 CPU also the AVX2 table, which it can still select).
func testedISAs() -> [Int32] {
    switch ck_isa_best() {
    case Int32(CK_ISA_SCALAR): return [Int32(CK_ISA_SCALAR)]
    case Int32(CK_ISA_AVX512): return [Int32(CK_ISA_SCALAR), Int32(CK_ISA_AVX2), Int32(CK_ISA_AVX512)]
    case let best: return [Int32(CK_ISA_SCALAR), best]
    }
}

/// Whether isa is one of the x86 SIMD tables: AVX2, or AVX-512 (the AVX2 table with AVX-512
/// kernels for the repacked matmuls, giving the same bits). Both follow ggml's x86 build
/// (its runtime quantizers, its AVX2 vec_dot order); scalar and NEON follow ggml's reference.
func isX86SIMD(_ isa: Int32) -> Bool {
    isa == Int32(CK_ISA_AVX2) || isa == Int32(CK_ISA_AVX512)
}

/// Runs body with the given instruction set forced, restoring the best one afterwards.
func withISA<R>(_ isa: Int32, _ body: () throws -> R) rethrows -> R {
    XCTAssertEqual(ck_set_isa(isa), isa, "could not select \(String(cString: ck_isa_name(isa)))")
    defer { _ = ck_set_isa(ck_isa_best()) }
    return try body()
}

func isaName(_ isa: Int32) -> String { String(cString: ck_isa_name(isa)) }

/// Small deterministic PRNG so failures reproduce.
typealias TestRNG = SplitMix

extension SplitMix {
    /// Approximately normal (sum of uniforms), scaled.
    mutating func normal(_ scale: Float = 1) -> Float {
        var s: Float = 0
        for _ in 0..<4 { s += Float.random(in: -1...1, using: &self) }
        return s * 0.866 * scale
    }
}

/// Errors reading a fixture file.
struct FixtureError: Error, CustomStringConvertible {
    let description: String
}

/// Binary fixtures written by Scripts/fixtures/make_quant_fixtures.py.
enum QuantFixtures {
    static var directory: String { TestModel.fixturesDirectory + "/quant" }

    struct File {
        let type: Int32
        let count: Int
        let blob: [UInt8]
        let floats: [Float]
    }

    /// Reads `name`: magic, type, element count, byte count, then blob and floats in the order the
    /// magic implies ("CKQD": blob then floats, "CKQA": floats then blob).
    static func load(_ name: String) throws -> File {
        let path = directory + "/" + name
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FixtureError(description: "fixture \(path) missing; run Scripts/fixtures/make_quant_fixtures.py")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= 16 else { throw FixtureError(description: "\(name): too short") }
        func u32(_ o: Int) -> Int {
            Int(bytes[o]) | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2]) << 16 | Int(bytes[o + 3]) << 24
        }
        let magic = String(decoding: bytes[0..<4], as: UTF8.self)
        let type = Int32(u32(4)), count = u32(8), nbytes = u32(12)
        guard bytes.count == 16 + nbytes + 4 * count else {
            throw FixtureError(description: "\(name): size \(bytes.count) does not match header")
        }
        func floats(at o: Int) -> [Float] {
            (0..<count).map { i in
                let b = o + 4 * i
                let bits = UInt32(bytes[b]) | UInt32(bytes[b + 1]) << 8 | UInt32(bytes[b + 2]) << 16
                    | UInt32(bytes[b + 3]) << 24
                return Float(bitPattern: bits)
            }
        }
        switch magic {
        case "CKQD":
            return File(type: type, count: count, blob: Array(bytes[16..<(16 + nbytes)]), floats: floats(at: 16 + nbytes))
        case "CKQA":
            return File(type: type, count: count, blob: Array(bytes[(16 + 4 * count)...]), floats: floats(at: 16))
        default:
            throw FixtureError(description: "\(name): bad magic \(magic)")
        }
    }
}

/// Distance in units in the last place between two floats (same sign assumed; 0 if bit-equal).
func ulpDistance(_ a: Float, _ b: Float) -> Int {
    if a == b { return 0 }
    if a.isNaN || b.isNaN || a.sign != b.sign { return Int.max }
    return abs(Int(a.bitPattern) - Int(b.bitPattern))
}

/// Runs a bash script of the repository (path relative to its root) and returns its exit status
/// and its standard output and error, interleaved.
func runRepositoryScript(_ path: String) throws -> (status: Int32, output: String) {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = [root.appendingPathComponent(path).path]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}
