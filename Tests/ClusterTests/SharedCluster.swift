import Foundation
import XCTest
import ZeroMQ

/// A cluster of real processes that one test class shares: started in `class func setUp`
/// (`start`), stopped and its directory removed in `class func tearDown` (`stop`); a start-up
/// failure is kept and reported by every test (`running`).
final class SharedCluster: @unchecked Sendable {
    private(set) var cluster: ClusterProcesses?
    private(set) var context: Context?
    private(set) var startError: String?

    /// Makes a `ClusterProcesses`, lets `launch` start it (and make what the class needs beside
    /// it), then opens the ZeroMQ context the tests talk through.
    func start(_ launch: (ClusterProcesses) throws -> Void) {
        do {
            let c = try ClusterProcesses()
            cluster = c
            try launch(c)
            context = try Context()
        } catch {
            startError = "\(error)"
        }
    }

    /// Stops every process and removes the cluster's directory.
    func stop() {
        cluster?.stopAndRemove()
        cluster = nil
        context = nil
    }

    /// The running cluster and its context; fails the test (and throws) when start-up failed.
    func running() throws -> (ClusterProcesses, Context) {
        if let startError { XCTFail("cluster did not start: \(startError)") }
        guard let cluster, let context, startError == nil else {
            throw ClusterProcesses.Failure(description: "no cluster")
        }
        return (cluster, context)
    }
}
