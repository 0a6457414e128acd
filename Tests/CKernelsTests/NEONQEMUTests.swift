import Foundation
import XCTest

/// The NEON kernels (`ck_neon.c`), cross-compiled for arm64 and run under QEMU user mode against
/// the scalar kernels (`Scripts/test-neon`, `Scripts/neon-check/check.c`): every quantized matmul
/// and the activation quantizers bit for bit, the float matmuls, dot products, axpy and attention
/// within a stated rounding bound (and bit for bit on data whose sums are exact), conversions bit
/// for bit, nothing written outside the outputs. Fails, never skips, when QEMU (`qemu-user`), the
/// arm64 cross C library (`libc6-dev-arm64-cross`, `libgcc-N-dev-arm64-cross`) or clang is
/// missing; `Scripts/setup` installs them. On an arm64 host it skips: there the whole
/// `CKernelsTests` suite already runs on the NEON table natively.
final class NEONQEMUTests: XCTestCase {
    func testNEONKernelsMatchScalarUnderQEMU() throws {
        #if arch(arm64)
        throw XCTSkip("on arm64 the NEON kernels are the active ones in every CKernels test")
        #else
        let (status, output) = try runRepositoryScript("Scripts/test-neon")
        XCTAssertEqual(status, 0, "Scripts/test-neon failed:\n\(output)")
        XCTAssertTrue(output.contains("active isa: neon"), output)
        // every kernel ck_fill_neon sets ran, with no mismatch
        let kernels = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
                       "f32", "f16", "bf16", "dot_f32", "dot_f16_f32", "axpy_f32", "axpy_f16_f32",
                       "f16_to_f32", "f32_to_f16", "quantize_q8_0", "quantize_q8_1", "quantize_q8_K",
                       "quantize_f16", "quantize_bf16", "attention_f16"]
        for kernel in kernels {
            XCTAssertNotNil(output.range(of: "(^|\n)\(kernel) +neon +[0-9]+ cases, 0 mismatches", options: .regularExpression),
                            "\(kernel) missing or failed:\n\(output)")
        }
        XCTAssertTrue(output.contains(" 0 bad"), output)
        #endif
    }
}
