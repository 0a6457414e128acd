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

    /// Runs `service` until it ends or SIGTERM / SIGINT asks it to stop gracefully. `alongside`
    /// (e.g. a metrics endpoint) start first and stop last; when any of them ends, all stop.
    public static func run(_ service: some Service, alongside: [any Service] = [], logger: Logger) async throws {
        let services = (alongside + [service]).map {
            ServiceGroupConfiguration.ServiceConfiguration(service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                                                           failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}
