import CaravanWire
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Admission control on a real cluster sized small (`--ctx 256 --batch-sequences 2`, one worker):
/// many long jobs at once queue for KV room (their position shows in the status), all finish,
/// and the worker's resident memory stays within the KV the plan sized (before, every job's cache
/// was allocated at once: 12 jobs here grew the worker by ~6x the plan's KV).
final class AdmissionTests: XCTestCase {
    /// Samples the resident memory of `pid` every 50 ms until cancelled; returns the peak.
    private static func sampleRSS(_ pid: Int32) -> Task<Int, Never> {
        Task {
            var highest = 0
            while !Task.isCancelled {
                highest = max(highest, residentBytes(pid: pid) ?? 0)
                try? await Task.sleep(for: .milliseconds(50))
            }
            return highest
        }
    }

    func testManyLongJobsQueueForKVRoomWithFlatWorkerMemory() async throws {
        let cluster = try ClusterProcesses()
        defer { cluster.stopAndRemove() }
        let model = try TestModel.requirePath()
        let (context, batch) = (256, 2)
        try cluster.start(workers: 1, model: model, extraCoordinatorArguments: [
            "--ctx", "\(context)", "--batch-sequences", "\(batch)", "--join-settle", "0", "--lanes", "1"])
        // F16 keys and values of every layer, for the positions the plan sized.
        let kvBound = try TestModel.kvBytes(path: model, positions: context * batch)

        let zmq = try Context()
        let client = try JobClient(context: zmq, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey)
        let admin = try JobClient(context: zmq, endpoint: cluster.clientsEndpoint, serverKey: cluster.coordinatorKey,
                                  keys: try cluster.adminKeys())
        var sampling = Caravan_V1_SamplingParameters()
        sampling.temperature = 0
        sampling.maxTokens = 64
        var rng = SplitMix(seed: 14)
        func prompt() -> [Int32] { (0..<100).map { _ in Int32(10 + rng.next() % 1000) } }
        // Warm up (scratch buffers, the first caches), then measure from there.
        let warm = try await client.run([JobClient.submit(prompt: prompt(), sampling: sampling, id: "w0"),
                                         JobClient.submit(prompt: prompt(), sampling: sampling, id: "w1")], timeout: .seconds(120))
        XCTAssertNil(warm["w0"]?.error)
        let worker = cluster.workers[0].processIdentifier
        let baseline = residentBytes(pid: worker) ?? 0
        XCTAssertGreaterThan(baseline, 0)

        let jobs = (0..<12).map { JobClient.submit(prompt: prompt(), sampling: sampling, id: "j\($0)") }
        try await client.send(jobs)
        var peak = baseline
        var sawPosition = false
        var statusLine = ""
        let sampler = Self.sampleRSS(worker)
        for _ in 0..<40 where !sawPosition {
            if case .clusterStatus(let s) = try await admin.request(.clusterStatusRequest(Caravan_V1_ClusterStatusRequest())) {
                if let queued = s.jobs.first(where: { $0.queuePosition > 0 }) {
                    sawPosition = true
                    statusLine = "\(queued.jobID) position \(queued.queuePosition) of \(s.admissionQueued): \(queued.waitingReason)"
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let results = try await client.collect(jobs.map(\.clientRequestID), timeout: .seconds(300))
        sampler.cancel()
        peak = max(peak, await sampler.value)
        for job in jobs { XCTAssertNil(results[job.clientRequestID]?.error, job.clientRequestID) }
        XCTAssertEqual(results.count, 12)
        XCTAssertTrue(sawPosition, "no job was shown waiting for KV room with a position")
        XCTAssertTrue(statusLine.contains("KV room"), statusLine)
        let growth = peak - baseline
        // The plan's KV for the whole stage plus a little for allocator slack.
        XCTAssertLessThanOrEqual(growth, kvBound + 4 << 20,
                                 "worker RSS grew \(growth >> 10) KiB; the plan sized \(kvBound >> 10) KiB of KV (\(statusLine))")
        print("admission: 12 jobs, worker RSS baseline \(baseline >> 20) MiB, peak +\(growth >> 10) KiB, plan KV \(kvBound >> 10) KiB")
    }
}
