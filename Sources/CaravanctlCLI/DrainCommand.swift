import ArgumentParser

/// `caravanctl drain WORKER`: asks the coordinator to move a worker's layers elsewhere and let it go.
struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drain a worker: the coordinator moves its layers to the others, then lets it exit.")

    @OptionGroup var connection: Connection

    @Argument(help: "The worker id (as `caravanctl status` lists it).")
    var worker: String

    @Option(help: "Why (for the coordinator's logs and plan history).")
    var reason = "operator request"

    @Option(name: .customLong("deadline-ms"), help: "Abandon the worker's unfinished steps after this long (0 = wait).")
    var deadlineMs: UInt32 = 0

    func run() async throws {
        let r = try await connection.client().drain(worker: worker, reason: reason,
                                                    deadline: deadlineMs == 0 ? nil : .milliseconds(deadlineMs))
        guard r.accepted else { throw ValidationError("drain refused: \(r.message)") }
        print(r.message.isEmpty ? "draining \(worker)" : r.message)
    }
}
