import Foundation

/// Runs a built executable or a script with a bounded wait, capturing its output in files.
enum CLIRun {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
        /// Killed at the timeout (`status` is then what the kill left, or -1).
        var timedOut = false
    }

    /// Runs `executable` with `arguments` (no standard input; `environment`, by default this
    /// process's without the `CARAVAN_COORDINATOR*` defaults); kills it after `timeout` seconds.
    /// Its output goes through two files in `directory`, removed afterwards.
    static func run(_ executable: URL, _ arguments: [String], in directory: URL, timeout: TimeInterval,
                    environment: [String: String]? = nil) throws -> Output {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        p.environment = environment ?? {
            var inherited = ProcessInfo.processInfo.environment
            inherited["CARAVAN_COORDINATOR"] = nil
            inherited["CARAVAN_COORDINATOR_KEY"] = nil
            return inherited
        }()
        let out = directory.appendingPathComponent("cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out")
        let err = out.appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let timedOut = p.isRunning
        if timedOut {
            kill(p.processIdentifier, SIGKILL)
            // Bounded: never hang on a child whose end Foundation does not notice.
            let grace = Date().addingTimeInterval(5)
            while p.isRunning, Date() < grace { Thread.sleep(forTimeInterval: 0.05) }
        } else {
            p.waitUntilExit()
        }
        return Output(status: p.isRunning ? -1 : p.terminationStatus,
                      stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "", timedOut: timedOut)
    }
}
