/// A step of a serving pipeline failed while its plan still serves: the job side found it (a lane
/// handed its jobs back), the control plane re-plans. The job desk owns the stream of them from
/// its construction (``JobDesk/pipelineFaults``); the control plane follows it
/// (``ControlPlane/followPipelineFaults()``), so neither installs a callback into the other.
struct PipelineFault: Sendable, Equatable {
    /// The plan epoch whose step failed (a fault of an epoch that no longer serves changes nothing).
    var epoch: UInt64
    /// Why, for the log and the plan history.
    var reason: String
}
