import CaravanCore
import CaravanWire
import Coordinator
import XCTest

/// A status reply lists a bounded number of jobs, so that it always encodes (it grew with the job
/// table until it exceeded the frame limit, and then every client asking waited forever).
final class StatusSizeTests: XCTestCase {
    func testAStatusListsAtMostTheLimitUnfinishedJobsFirst() throws {
        let jobs = (0..<5000).map { i -> AdminJob in
            AdminJob(status: JobStatus(job: JobID("job-\(i)")!, state: i % 10 == 0 ? .generating : .finished,
                                       submittedUnixMs: UInt64(1_700_000_000_000 + i), waitingReason: String(repeating: "w", count: 200)))
        }
        let snapshot = ClusterSnapshot(nowMs: 0, nowUnixMs: 1_800_000_000_000, members: [], phase: .gathering,
                                       expectedWorkers: 1, jobs: jobs, unavailableReason: nil, heartbeatIntervalMs: 250,
                                       heartbeatTimeoutMs: 2000)
        let status = AdminReports.clusterStatus(snapshot, includeFinishedJobs: true)
        XCTAssertEqual(status.jobs.count, AdminReports.maxListedJobs)
        XCTAssertEqual(status.jobs.filter { $0.state == .generating }.count, 500, "every unfinished job is listed")
        XCTAssertEqual(status.jobs.last?.jobID, "job-4999", "then the newest ended ones")
        XCTAssertEqual(status.jobs.map(\.submittedUnixMs), status.jobs.map(\.submittedUnixMs).sorted())
        XCTAssertNoThrow(try WireCodec().encode(.clusterStatus(status)), "the reply fits a frame")
        let running = AdminReports.clusterStatus(snapshot, includeFinishedJobs: false)
        XCTAssertEqual(running.jobs.count, 500)
    }
}
