import CKernels
import XCTest

/// Block layouts and dequantization against gguf-py's numpy reference (fixtures).
final class DequantTests: XCTestCase {
    func testTypeTable() {
        let expected: [(QType, Int, Int, Int32)] = [
            (.f32, 1, 4, Int32(CK_TYPE_F32)), (.f16, 1, 2, Int32(CK_TYPE_F16)), (.bf16, 1, 2, Int32(CK_TYPE_BF16)),
            (.q4_0, 32, 18, Int32(CK_TYPE_Q8_0)), (.q4_1, 32, 20, Int32(CK_TYPE_Q8_1)),
            (.q5_0, 32, 22, Int32(CK_TYPE_Q8_0)), (.q5_1, 32, 24, Int32(CK_TYPE_Q8_1)),
            (.q8_0, 32, 34, Int32(CK_TYPE_Q8_0)), (.q8_1, 32, 36, -1),
            (.q2_K, 256, 84, Int32(CK_TYPE_Q8_K)), (.q3_K, 256, 110, Int32(CK_TYPE_Q8_K)),
            (.q4_K, 256, 144, Int32(CK_TYPE_Q8_K)), (.q5_K, 256, 176, Int32(CK_TYPE_Q8_K)),
            (.q6_K, 256, 210, Int32(CK_TYPE_Q8_K)), (.q8_K, 256, 292, -1),
        ]
        for (t, elems, bytes, dot) in expected {
            XCTAssertEqual(ck_type_supported(t.id), 1, "\(t)")
            XCTAssertEqual(t.blockElements, elems, "\(t)")
            XCTAssertEqual(t.blockBytes, bytes, "\(t)")
            XCTAssertEqual(t.rowBytes(elems * 3), bytes * 3, "\(t)")
            XCTAssertEqual(ck_vec_dot_type(t.id), dot, "\(t)")
            XCTAssertEqual(String(cString: ck_type_name(t.id)), t.name)
        }
        XCTAssertEqual(ck_row_bytes(QType.q4_K.id, 100), 0, "partial block")
        for unknown: Int32 in [4, 5, 16, 29, 31, -1, 1000] {
            XCTAssertEqual(ck_type_supported(unknown), 0)
            XCTAssertEqual(ck_block_bytes(unknown), 0)
            XCTAssertEqual(ck_block_elements(unknown), 0)
            XCTAssertEqual(ck_vec_dot_type(unknown), -1)
        }
    }

    func testDequantizeMatchesGGUFPy() throws {
        let names = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                     "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
        for name in names {
            let fx = try QuantFixtures.load("deq_\(name).bin")
            XCTAssertEqual(String(cString: ck_type_name(fx.type)), name)
            XCTAssertEqual(ck_row_bytes(fx.type, Int64(fx.count)), Int64(fx.blob.count), name)
            for isa in testedISAs() {
                withISA(isa) {
                    var out = [Float](repeating: .nan, count: fx.count)
                    let rc = ck_dequantize_row(fx.type, fx.blob, &out, Int64(fx.count))
                    XCTAssertEqual(rc, 0, name)
                    var bad = 0
                    for i in 0..<fx.count where out[i].bitPattern != fx.floats[i].bitPattern {
                        if bad < 5 {
                            XCTFail("\(name) [\(isaName(isa))] element \(i): got \(out[i]), gguf-py \(fx.floats[i])")
                        }
                        bad += 1
                    }
                    XCTAssertEqual(bad, 0, "\(name) [\(isaName(isa))]: \(bad) elements differ")
                }
            }
        }
    }

    func testDequantizeRejectsBadInput() {
        var out = [Float](repeating: 0, count: 256)
        let raw = [UInt8](repeating: 0, count: 1024)
        XCTAssertEqual(ck_dequantize_row(QType.q4_0.id, raw, &out, 31), -1)
        XCTAssertEqual(ck_dequantize_row(QType.q6_K.id, raw, &out, 128), -1)
        XCTAssertEqual(ck_dequantize_row(4, raw, &out, 32), -1)
        XCTAssertEqual(ck_dequantize_row(QType.q6_K.id, raw, &out, 256), 0)
    }
}
