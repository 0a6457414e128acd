import CaravanTransport

/// The transports a coordinator serves over (``CoordinatorService/run(over:)``): made from ZeroMQ
/// sockets (with CURVE and ZAP) by the daemon's start-up, or from an in-memory hub by tests that
/// run a cluster in one process.
public struct CoordinatorLinks: Sendable {
    /// Many-peer link workers register, heartbeat and report on.
    public var control: any Transport
    /// Many-peer link the last stage posts step results on.
    public var results: any Transport
    /// Many-peer link clients submit jobs and admin requests on.
    public var clients: any Transport
    /// Connects to a plan's first stage.
    public var dialer: any TransportDialer
    /// Where the control link is reached (for logs).
    public var controlAddress: String
    /// Where the client link is reached (for logs).
    public var clientsAddress: String
    /// Where the result link is reached: sent to the last stage in its assignment.
    public var resultAddress: String
    /// Who may do what, checked per message against the identity a link proved (nil: plain mode,
    /// every peer every role).
    public var access: AccessList?
    /// Starts the model source workers without the model file pull layers from, given who is a
    /// registered worker (by data key); nil: none (workers must hold the file).
    public var modelSource: (@Sendable (_ isRegisteredWorker: @escaping @Sendable (String) -> Bool) async throws -> ModelServer)?

    /// Links for a coordinator.
    public init(control: any Transport, results: any Transport, clients: any Transport, dialer: any TransportDialer,
                controlAddress: String, clientsAddress: String, resultAddress: String, access: AccessList? = nil,
                modelSource: (@Sendable (_ isRegisteredWorker: @escaping @Sendable (String) -> Bool) async throws -> ModelServer)? = nil) {
        self.control = control
        self.results = results
        self.clients = clients
        self.dialer = dialer
        self.controlAddress = controlAddress
        self.clientsAddress = clientsAddress
        self.resultAddress = resultAddress
        self.access = access
        self.modelSource = modelSource
    }
}
