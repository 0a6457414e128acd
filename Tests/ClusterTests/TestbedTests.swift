import CaravanWire
import Foundation
import XCTest
import ZeroMQ

/// `Deploy/testbed` itself: it brings a cluster up that serves a job from this (root) namespace,
/// its fault commands change what they say, and `down` leaves nothing behind.
final class TestbedTests: XCTestCase {
    func testUpFaultCommandsAndDown() async throws {
        let bed = try Testbed(name: "cvtt", subnet: "10.80.0", workers: 2, coordinatorArguments: ["--activation-dtype", "f32"],
                              workerArguments: ["--speed", "1"])
        var downed = false
        defer { if !downed { bed.down() } }
        let context = try Context()
        let client = try JobClient(context: context, endpoint: bed.clientsEndpoint, serverKey: bed.coordinatorKey)
        let r = try await JobStream.run(client, [FaultLoad.specs[0].submit(maxTokens: 8)], timeout: .seconds(60))
        let job = try XCTUnwrap(r[FaultLoad.specs[0].id])
        XCTAssertNil(job.error)
        XCTAssertEqual(job.tokens.count, 8)
        XCTAssertTrue(job.sequencesContiguous, "\(job.sequences)")
        if bed.mode == .netns {
            XCTAssertTrue(bed.clientsEndpoint.hasPrefix("tcp://10.80.0.1:"), bed.clientsEndpoint)
        }

        func state(_ host: Int) -> String {
            let row = bed.status().split(separator: "\n").first { $0.hasPrefix("h\(host) ") } ?? ""
            return row.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.map(String.init) ?? "?"
        }
        XCTAssertEqual([0, 1, 2].map(state), ["running", "running", "running"], bed.status())
        try bed.freeze(1)
        XCTAssertEqual(state(1), "frozen")
        try bed.thaw(1)
        XCTAssertEqual(state(1), "running")
        let added = try bed.add()
        XCTAssertEqual(added, 3)
        XCTAssertTrue(bed.isAlive(3))
        try bed.kill(3)
        let deadline = Date().addingTimeInterval(5)
        while bed.isAlive(3), Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertFalse(bed.isAlive(3))
        XCTAssertEqual(state(3), "dead")
        try bed.restart(3)
        XCTAssertTrue(bed.isAlive(3))
        try bed.slow(1, percent: 30)
        XCTAssertTrue(bed.status().contains("slow=30%"), bed.status())
        try bed.slow(1, percent: 100)
        XCTAssertFalse(bed.status().contains("slow="), bed.status())
        XCTAssertEqual(state(1), "running")
        XCTAssertThrowsError(try bed.run(["kill", "9"]), "an unknown host is refused")

        if bed.mode == .netns {
            try bed.cut(2)
            XCTAssertTrue(bed.status().split(separator: "\n").first { $0.hasPrefix("h2 ") }?.contains(" down ") ?? false, bed.status())
            try bed.heal(2)
            XCTAssertTrue(bed.status().split(separator: "\n").first { $0.hasPrefix("h2 ") }?.contains(" up ") ?? false, bed.status())
            // Packet loss really drops packets, and `loss H 0` really ends it (netem or iptables).
            func reachable() throws -> Bool {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/bin/bash")
                p.arguments = ["-c", "timeout -s KILL 2 bash -c '</dev/tcp/10.80.0.3/7001'"]
                p.standardError = FileHandle.nullDevice
                try p.run()
                p.waitUntilExit()
                return p.terminationStatus == 0
            }
            XCTAssertTrue(try reachable(), "h2's data port answers")
            try bed.loss(2, percent: 100)
            XCTAssertTrue(bed.status().contains("loss=100%"), bed.status())
            XCTAssertFalse(try reachable(), "100% loss: nothing gets through")
            try bed.loss(2, percent: 0)
            XCTAssertFalse(bed.status().contains("loss="), bed.status())
            XCTAssertTrue(try reachable(), "loss 0 ends the loss")
        } else {
            XCTAssertThrowsError(try bed.cut(2), "loopback beds cannot cut links")
        }

        bed.down()
        downed = true
        XCTAssertFalse(FileManager.default.fileExists(atPath: bed.directory.path), "down removes the state directory")
        XCTAssertFalse((0...3).contains(where: bed.isAlive), "down stops every daemon")
        if bed.mode == .netns {
            let list = Process()
            list.executableURL = URL(fileURLWithPath: "/bin/sh")
            list.arguments = ["-c", "ip netns list; ip -o link show"]
            let out = Pipe()
            list.standardOutput = out
            try list.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            list.waitUntilExit()
            XCTAssertFalse(text.contains("cvtt-"), "down removes every namespace and link:\n\(text)")
        }
        // Idempotent: a second down (nothing left) succeeds.
        XCTAssertNoThrow(try bed.run(["down"]))
    }
}
