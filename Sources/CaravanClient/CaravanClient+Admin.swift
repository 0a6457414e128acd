import CaravanCore
import CaravanWire

/// The cluster's model as the coordinator reports it.
public struct ServedModel: Sendable, Equatable {
    /// The model's name; empty while the cluster has none.
    public var name: String
    /// Why the cluster cannot serve jobs now (empty when it can).
    public var waitingReason: String

    /// Creates a record.
    public init(name: String, waitingReason: String) {
        self.name = name
        self.waitingReason = waitingReason
    }
}

/// The coordinator's answer to a drain request.
public struct DrainAnswer: Sendable, Equatable {
    /// Whether the coordinator started draining the worker.
    public var accepted: Bool
    /// Its explanation (why it refused, or what it does).
    public var message: String

    /// Creates an answer.
    public init(accepted: Bool, message: String) {
        self.accepted = accepted
        self.message = message
    }
}

extension CaravanClient {
    /// Asks for a job's status.
    public func status(job: JobID, timeout: Duration = .seconds(10)) async throws(ClientError) -> JobStatus {
        var m = Caravan_V1_JobStatusRequest()
        m.jobID = job.rawValue
        let wire = try expect(try await request(.jobStatusRequest(m), timeout: timeout)) {
            if case .jobStatus(let s) = $0 { s } else { nil }
        }
        do {
            return try JobStatus(wire: wire)
        } catch {
            throw .badReply("status of \(job): \(error)")
        }
    }

    /// Asks for the cluster's model (name, and why it cannot serve now).
    public func servedModel(timeout: Duration = .seconds(10)) async throws(ClientError) -> ServedModel {
        let s = try await clusterStatus(timeout: timeout)
        return ServedModel(name: s.model.name, waitingReason: s.waitingReason)
    }

    /// Asks the coordinator to drain worker `worker` (move its layers to the others, then let it
    /// go) for `reason`; its unfinished steps are abandoned after `deadline` (nil = wait).
    public func drain(worker: String, reason: String, deadline: Duration? = nil,
                      timeout: Duration = .seconds(30)) async throws(ClientError) -> DrainAnswer {
        var m = Caravan_V1_DrainRequest()
        m.workerID = worker
        m.reason = reason
        if let deadline {
            m.deadlineMs = UInt32(clamping: deadline.wholeMilliseconds)
        }
        let r = try expect(try await request(.drainRequest(m), timeout: timeout)) {
            if case .adminResult(let r) = $0 { r } else { nil }
        }
        return DrainAnswer(accepted: r.ok, message: r.message)
    }

    // MARK: Admin reports

    /// Asks for the cluster's status (workers, jobs the caller may see, plan history).
    public func clusterStatus(includeFinishedJobs: Bool = false,
                              timeout: Duration = .seconds(10)) async throws(ClientError) -> ClusterReport {
        var m = Caravan_V1_ClusterStatusRequest()
        m.includeFinishedJobs = includeFinishedJobs
        let wire = try expect(try await request(.clusterStatusRequest(m), timeout: timeout)) {
            if case .clusterStatus(let s) = $0 { s } else { nil }
        }
        do {
            return try ClusterReport(wire: wire)
        } catch {
            throw .badReply("cluster status: \(error)")
        }
    }

    /// Asks what the coordinator's planner would do (changes nothing); throws
    /// ``ClientError/invalidRequest(_:)`` when a limit does not fit the wire.
    public func planPreview(_ preview: PlanPreviewRequest,
                            timeout: Duration = .seconds(10)) async throws(ClientError) -> PlanPreview {
        let m: Caravan_V1_PlanPreviewRequest
        do {
            m = try Caravan_V1_PlanPreviewRequest(preview)
        } catch {
            throw .invalidRequest(error.description)
        }
        return PlanPreview(wire: try expect(try await request(.planPreviewRequest(m), timeout: timeout)) {
            if case .planPreview(let p) = $0 { p } else { nil }
        })
    }
}
