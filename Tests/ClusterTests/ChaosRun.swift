import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// The long chaos run (not in CI; `Scripts/chaos` starts it): continuous load on a test bed while
/// random faults are injected one after another (kill and restart, freeze and thaw, cut and heal,
/// packet loss, add, drain and rejoin), every finished job checked against its fault-free stream.
/// Runs only when `CARAVAN_CHAOS_FAULTS` is set; writes a Markdown report to `CARAVAN_CHAOS_REPORT`.
final class ChaosRun: XCTestCase {
    /// One injected fault.
    struct Fault {
        var kind: String
        var host: Int
        var at: ContinuousClock.Instant
        /// Jobs streaming when it was injected.
        var running: Set<String>
    }

    /// One job of the load.
    struct Running {
        var spec: FaultLoad.Spec
        var job: JobStream.Job
        var submitted: ContinuousClock.Instant
    }

    func testChaos() async throws {
        let env = ProcessInfo.processInfo.environment
        guard let faultCount = env["CARAVAN_CHAOS_FAULTS"].flatMap(Int.init), faultCount > 0 else {
            throw XCTSkip("the chaos run is not part of the test suite: run Scripts/chaos (sets CARAVAN_CHAOS_FAULTS)")
        }
        let seed = env["CARAVAN_CHAOS_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...999_999)
        let concurrency = env["CARAVAN_CHAOS_JOBS"].flatMap(Int.init) ?? 4
        let maxTokens = env["CARAVAN_CHAOS_TOKENS"].flatMap(Int.init) ?? 48
        var rng = SplitMix(seed: seed)
        print("chaos: \(faultCount) faults, \(concurrency) concurrent jobs of \(maxTokens) tokens, seed \(seed)")

        let bed = try Testbed(name: "cvchaos", subnet: "10.81.0", workers: 3,
                              coordinatorArguments: FaultLoad.coordinatorArguments, workerArguments: FaultLoad.workerArguments)
        defer { if (env["CARAVAN_CHAOS_KEEP"] ?? "").isEmpty { bed.down() } }
        let context = try Context()
        let client = try JobClient(context: context, endpoint: bed.clientsEndpoint, serverKey: bed.coordinatorKey)
        let reference = try await FaultLoad.references(on: client, maxTokens: maxTokens)
        let help = (try? CLIRun.run(ClusterProcesses.locateBinaries().appendingPathComponent("caravanctl"), ["--help"],
                                    in: FileManager.default.temporaryDirectory, timeout: 10).stdout) ?? ""
        let drainable = help.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces).hasPrefix("drain ") }
        var kinds = ["kill", "freeze", "add"]
        if bed.mode == .netns { kinds += ["cut", "loss"] }
        if drainable { kinds.append("drain") }
        if let only = env["CARAVAN_CHAOS_KINDS"], !only.isEmpty {
            let wanted = only.split(separator: ",").map(String.init)
            kinds = kinds.filter(wanted.contains)
            guard !kinds.isEmpty else { throw Testbed.Failure(description: "no usable fault kind in \(only)") }
        }
        print("chaos: fault kinds \(kinds) (\(bed.mode.rawValue))")

        let loadAtStart = Self.loadAverage()
        let started = ContinuousClock.now
        // Worker hosts that are (or will be back) up; fault threads update it.
        let workers = Locked([1, 2, 3])
        var faults: [Fault] = []
        var finished: [Running] = []
        var running: [String: Running] = [:]
        var submittedCount = 0
        // When the current fault episode ended (nil while it runs). The next fault waits until a
        // token arrived after that (the cluster recovered) or 30 s passed, then 0.5-2 s more.
        let episodeEnd = Locked<ContinuousClock.Instant?>(.now)
        var settling = false
        var lastToken = ContinuousClock.now
        let episodeErrors = Locked<[String]>([])
        var nextFault = ContinuousClock.now + .seconds(2)
        let jobTimeout = Duration.seconds(120)
        var endDeadline: ContinuousClock.Instant?

        // After a job fails, wait a little before refilling (no storm of refused jobs).
        var refillAfter = ContinuousClock.now
        func submitMore() async throws {
            while running.count < concurrency, faults.count < faultCount || submittedCount == 0, ContinuousClock.now >= refillAfter {
                let spec = FaultLoad.specs[submittedCount % FaultLoad.specs.count]
                let id = "\(spec.id)#\(submittedCount)"
                submittedCount += 1
                try await client.socket.send(try client.codec.encode(.jobSubmit(spec.submit(maxTokens: maxTokens, as: id))),
                                             timeout: .seconds(5))
                running[id] = Running(spec: spec, job: JobStream.Job(clientID: id), submitted: .now)
            }
        }

        try await submitMore()
        while !running.isEmpty || faults.count < faultCount {
            // Receive for a moment.
            if let frames = try? await client.socket.receive(timeout: .milliseconds(100)),
               case .message(.jobEvent(let e), _)? = try? client.codec.decode(frames), var r = running[e.clientRequestID] {
                r.job.record(e)
                if case .token? = e.event { lastToken = .now }
                running[e.clientRequestID] = r
            }
            // Retire finished and timed-out jobs; keep the load up while faults remain.
            for (id, r) in running where r.job.done || ContinuousClock.now - r.submitted > jobTimeout {
                var r = r
                if !r.job.done { r.job.error = "timed out after \(jobTimeout)" }
                if r.job.error != nil { refillAfter = .now + .milliseconds(500) }
                finished.append(r)
                running[id] = nil
            }
            if faults.count < faultCount { try await submitMore() }
            // Next fault episode, one at a time.
            if settling, let end = episodeEnd.withLock({ $0 }),
               lastToken > end || running.isEmpty || ContinuousClock.now > end + .seconds(30) {
                settling = false
                nextFault = .now + .milliseconds(500 + Int(rng.next() % 1500))
            }
            if faults.count < faultCount, !settling, episodeEnd.withLock({ $0 != nil }), ContinuousClock.now >= nextFault {
                let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
                let alive = workers.withLock { $0.count }
                var chosen = kind
                if (kind == "kill" || kind == "freeze" || kind == "cut" || kind == "drain") && alive < 2 { chosen = "add" }
                if chosen == "drain" && alive < 3 { chosen = "freeze" }
                if chosen == "add" && alive >= 5 { chosen = "freeze" }
                let pick = rng.next()
                let host = chosen == "add" ? 0 : workers.withLock { $0[Int(pick % UInt64($0.count))] }
                let hold = 0.5 + Double(rng.next() % 3500) / 1000  // 0.5 ... 4 s
                let lossPercent = 20 + Int(rng.next() % 31)
                faults.append(Fault(kind: chosen, host: host, at: .now, running: Set(running.keys)))
                episodeEnd.withLock { $0 = nil }
                settling = true
                let index = faults.count
                let action = chosen
                print("chaos: fault \(index)/\(faultCount): \(chosen)\(chosen == "add" ? "" : " h\(host)")")
                Thread.detachNewThread {
                    do {
                        switch action {
                        case "kill":
                            try bed.kill(host)
                            Thread.sleep(forTimeInterval: hold)
                            do { try bed.restart(host) } catch {
                                workers.withLock { $0.removeAll { $0 == host } }
                                throw error
                            }
                        case "freeze":
                            try bed.freeze(host)
                            Thread.sleep(forTimeInterval: hold)
                            try bed.thaw(host)
                        case "cut":
                            try bed.cut(host)
                            Thread.sleep(forTimeInterval: hold)
                            try bed.heal(host)
                        case "loss":
                            try bed.loss(host, percent: lossPercent)
                            Thread.sleep(forTimeInterval: hold + 1)
                            try bed.loss(host, percent: 0)
                        case "add":
                            let i = try bed.add()
                            workers.withLock { $0.append(i) }
                        case "drain":
                            try bed.run(["drain", "\(host)"], timeout: 60)
                            let deadline = Date().addingTimeInterval(30)
                            while bed.isAlive(host), Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
                            do { try bed.restart(host) } catch {
                                workers.withLock { $0.removeAll { $0 == host } }
                                throw error
                            }
                        default: break
                        }
                    } catch {
                        episodeErrors.withLock { $0.append("fault \(index) \(action) h\(host): \(error)") }
                    }
                    episodeEnd.withLock { $0 = .now }
                }
            }
            // Wait for the last episode, then for the running jobs (bounded).
            if faults.count >= faultCount, episodeEnd.withLock({ $0 != nil }) {
                let end = endDeadline ?? (ContinuousClock.now + .seconds(180))
                endDeadline = end
                if ContinuousClock.now > end {
                    for (id, r) in running { var r = r; r.job.error = "still running at the end"; finished.append(r); running[id] = nil }
                }
            }
        }
        let elapsed = ContinuousClock.now - started

        // Tally.
        var completed = 0, equal = 0, lost = 0, tokensLost = 0, tokensDoubled = 0
        var problems: [String] = []
        for r in finished {
            guard r.job.error == nil, let ref = reference[r.spec.id] else {
                lost += 1
                problems.append("lost \(r.job.summary)")
                continue
            }
            completed += 1
            let seqRepeats = r.job.sequences.count - Set(r.job.sequences).count
            if r.job.tokens == ref.tokens && r.job.sequencesContiguous {
                equal += 1
            } else {
                tokensLost += max(0, ref.tokens.count - r.job.tokens.count)
                tokensDoubled += max(0, r.job.tokens.count - ref.tokens.count) + seqRepeats
                let first = FaultLoad.firstDifference(r.job.tokens, ref.tokens)
                problems.append("differs \(r.job.summary) at token \(first) (fault-free \(ref.tokens.count) tokens)")
            }
        }
        let all = finished.map(\.job)
        var waits: [Int] = []
        var waitsByKind: [String: [Int]] = [:]
        for f in faults {
            let w = all.filter { f.running.contains($0.clientID) }.compactMap { $0.resumeDelay(after: f.at) }
            if let m = w.max() {
                waits.append(FaultLoad.milliseconds(m))
                waitsByKind[f.kind, default: []].append(FaultLoad.milliseconds(m))
            }
        }
        waits.sort()
        let perKind = waitsByKind.keys.sorted().map { kind -> String in
            let w = waitsByKind[kind, default: []].sorted()
            return "\(kind) \(w[w.count / 2]) / \(w.last ?? 0)"
        }.joined(separator: ", ")
        let median = waits.isEmpty ? 0 : waits[waits.count / 2]
        let byKind = Dictionary(grouping: faults, by: \.kind).map { "\($0.key) \($0.value.count)" }.sorted().joined(separator: ", ")
        let errors = episodeErrors.withLock { $0 }
        let date = ISO8601DateFormatter().string(from: Date())
        let model = env["CARAVAN_TEST_MODEL"].flatMap { $0.isEmpty ? nil : $0 }
        let modelFlag = model.map { " --model \(URL(fileURLWithPath: $0).lastPathComponent)" } ?? ""
        let daemons = try ClusterProcesses.locateBinaries().path
        let binFlag = env["CARAVAN_BIN"].flatMap { $0.isEmpty ? nil : " --bin \($0)" } ?? ""
        let build = daemons.hasSuffix("/release") ? "release build" : (daemons.hasSuffix("/debug") ? "debug build" : "daemons from \(daemons)")
        let report = """
        ### Chaos run, \(date)

        `Scripts/chaos --faults \(faultCount) --seed \(seed) --jobs \(concurrency) --tokens \(maxTokens)\(env["CARAVAN_CHAOS_KINDS"].map { $0.isEmpty ? "" : " --kinds \($0)" } ?? "")\(modelFlag)\(binFlag)` \
        (\(bed.mode.rawValue) test bed, 3 workers at the start, \(FaultLoad.coordinatorArguments.joined(separator: " ")), \(build); \
        load average \(loadAtStart) at the start, \(Self.loadAverage()) at the end)

        | measure | result |
        |---|---|
        | faults injected | \(faults.count) (\(byKind)) |
        | fault commands that failed | \(errors.count) |
        | jobs completed | \(completed) (\(equal) equal to the fault-free stream) |
        | jobs lost (failed or timed out) | \(lost) |
        | tokens lost / doubled | \(tokensLost) / \(tokensDoubled) (in \(completed - equal) jobs that differ) |
        | fault to next token (after the pause; max over the jobs streaming at the fault) | median \(median) ms, max \(waits.last ?? 0) ms (\(waits.count) faults) |
        | same, by kind (median / max ms) | \(perKind) |
        | duration | \(FaultLoad.milliseconds(elapsed) / 1000) s |


        """
        print(report)
        for p in problems.prefix(30) { print("chaos: \(p)") }
        for e in errors.prefix(30) { print("chaos: \(e)") }
        if let path = env["CARAVAN_CHAOS_REPORT"] {
            try (report + (problems.isEmpty && errors.isEmpty ? "" : "Problems (first 10):\n\n"
                + (problems + errors).prefix(10).map { "- \($0)" }.joined(separator: "\n") + "\n\n"))
                .write(toFile: path, atomically: true, encoding: .utf8)
        }
        if lost > 0 || completed != equal { print("--- coordinator log (tail)\n\(bed.log(0).split(separator: "\n").suffix(80).joined(separator: "\n"))") }
        XCTAssertEqual(lost, 0, "jobs lost")
        XCTAssertEqual(completed, equal, "jobs whose stream differs from the fault-free run")
        XCTAssertEqual(faults.count, faultCount)
    }

    /// The 1-minute load average (`/proc/loadavg`): a run's timings mean little on a busy machine.
    private static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").first.map(String.init) ?? "?"
    }
}
