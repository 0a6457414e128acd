import Foundation

/// Runs a built executable with a bounded wait, capturing its output in files.
enum CLIRun {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `executable` with `arguments` (no standard input); kills it after `timeout` seconds.
    static func run(_ executable: URL, _ arguments: [String], in directory: URL, timeout: TimeInterval) throws -> Output {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["CARAVAN_COORDINATOR"] = nil
        environment["CARAVAN_COORDINATOR_KEY"] = nil
        p.environment = environment
        let out = directory.appendingPathComponent("cli-\(UInt32.random(in: 0...UInt32.max)).out")
        let err = out.appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return Output(status: p.terminationStatus,
                      stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }
}
