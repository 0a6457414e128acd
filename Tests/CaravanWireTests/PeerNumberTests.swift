import XCTest
import CaravanWire
import SwiftProtobuf
import ZeroMQ

/// Numbers a worker reports are checked where frames are decoded: finite and in range, so that no
/// NaN or infinity reaches the planner, the rebalancer or a status report (`Int(_:)` traps on
/// them), and ids and addresses are bounded.
final class PeerNumberTests: XCTestCase {
    let codec = WireCodec()

    private func decoded(_ body: Caravan_V1_Envelope.OneOf_Body) throws -> Caravan_V1_Envelope.OneOf_Body {
        var envelope = Caravan_V1_Envelope()
        envelope.protocolVersion = 1
        envelope.body = body
        guard case .message(let b, _) = try codec.decode([ZeroMQ.Message(try envelope.serializedBytes() as [UInt8])]) else {
            throw WireError.malformed("not a message")
        }
        return b
    }

    private func assertInvalid(_ body: Caravan_V1_Envelope.OneOf_Body, _ field: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decoded(body), file: file, line: line) { error in
            guard case .invalidField(let name, let reason)? = error as? WireError else {
                return XCTFail("\(error)", file: file, line: line)
            }
            XCTAssertEqual(name, field, file: file, line: line)
            XCTAssertFalse(reason.isEmpty, file: file, line: line)
        }
    }

    private var register: Caravan_V1_Register {
        var r = Caravan_V1_Register()
        r.workerID = "w"
        r.dataAddress = "tcp://10.0.0.5:7001"
        r.capabilities = Caravan_V1_WorkerCapabilities.with {
            $0.cores = 2
            $0.measuredGflops = 48.5
        }
        return r
    }

    private var heartbeat: Caravan_V1_Heartbeat {
        var h = Caravan_V1_Heartbeat()
        h.senderID = "w"
        h.state = .ready
        h.recentStepMs = 12.5
        h.recentRowsPerStep = 4
        return h
    }

    func testRegisterSpeedMustBeFiniteAndInRange() throws {
        XCTAssertNoThrow(try decoded(.register(register)))
        for bad in [Double.infinity, -.infinity, .nan, -1, 1e12] {
            var r = register
            r.capabilities.measuredGflops = bad
            assertInvalid(.register(r), "register.capabilities.measured_gflops")
        }
    }

    func testRegisterIDsAndAddressesAreBounded() throws {
        var r = register
        r.workerID = String(repeating: "w", count: 129)
        assertInvalid(.register(r), "register.worker_id")
        r = register
        r.dataAddress = "tcp://" + String(repeating: "a", count: 600) + ":1"
        assertInvalid(.register(r), "register.data_address")
    }

    func testHeartbeatStatisticsMustBeFiniteAndInRange() throws {
        XCTAssertNoThrow(try decoded(.heartbeat(heartbeat)))
        for bad in [Float.infinity, -.infinity, .nan, -1, 1e12] {
            var h = heartbeat
            h.recentStepMs = bad
            assertInvalid(.heartbeat(h), "heartbeat.recent_step_ms")
            h = heartbeat
            h.recentRowsPerStep = bad
            assertInvalid(.heartbeat(h), "heartbeat.recent_rows_per_step")
        }
    }
}
