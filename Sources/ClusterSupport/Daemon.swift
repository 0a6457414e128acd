import Logging
import ServiceLifecycle

/// What the daemons (`caravan-coordinator`, `caravan-worker`, `caravan-openai`) do around their service.
public enum Daemon {
    /// Sends every logger's records at `level` and above to standard error. Call once, first.
    public static func bootstrapLogging(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// Runs `service` until it ends or SIGTERM / SIGINT asks it to stop gracefully.
    public static func run(_ service: some Service, logger: Logger) async throws {
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                             failureTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}
