import Foundation
import XCTest

/// The AVX-512 kernels of the repacked matmuls, compiled against SIMDe's portable intrinsics
/// and run on this CPU (which has no AVX-512) against the scalar kernels, bit for bit
/// (`Scripts/test-avx512`, `Scripts/avx512-check/check.c`). Fails, never skips, when SIMDe
/// (`libsimde-dev`, installed by `Scripts/setup`) or clang is missing.
final class AVX512SIMDeTests: XCTestCase {
    func testAVX512KernelsMatchScalarThroughSIMDe() throws {
        #if arch(x86_64)
        let (status, output) = try runRepositoryScript("Scripts/test-avx512")
        XCTAssertEqual(status, 0, "Scripts/test-avx512 failed:\n\(output)")
        // every type and both variants ran, with no mismatch
        for type in ["q4_0", "q4_1", "q5_0", "q8_0"] {
            for variant in ["avx512bw", "avx512vnni"] {
                XCTAssertNotNil(output.range(of: "\(type) +\(variant) +[0-9]+ cases, 0 mismatches", options: .regularExpression),
                                "\(type) \(variant) missing or failed:\n\(output)")
            }
        }
        XCTAssertTrue(output.contains(" 0 bad"), output)
        #else
        throw XCTSkip("the SIMDe build of the AVX-512 kernels needs an x86-64 CPU with AVX2")
        #endif
    }
}
