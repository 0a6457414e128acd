import CaravanTransport

/// The transports a worker serves over (``WorkerService/run(over:)``): made from ZeroMQ sockets by
/// the daemon's start-up, or from an in-memory hub by tests that run a cluster in one process.
public struct WorkerLinks: Sendable {
    /// One-peer link to the coordinator's control endpoint (registration, heartbeats, assignments).
    public var control: any Transport
    /// Many-peer link steps arrive on (the previous stage, or the coordinator for the first stage).
    public var data: any Transport
    /// Connects to the next stage's data endpoint and the coordinator's result endpoint.
    public var dialer: any TransportDialer
    /// The data endpoint other nodes connect to (sent in the registration).
    public var dataAddress: String
    /// Pulls layers from the coordinator's model source for models without a local file (nil:
    /// this worker serves only the model files it holds).
    public var layerFetcher: LayerFetcher?

    /// Links for a worker.
    public init(control: any Transport, data: any Transport, dialer: any TransportDialer, dataAddress: String,
                layerFetcher: LayerFetcher? = nil) {
        self.control = control
        self.data = data
        self.dialer = dialer
        self.dataAddress = dataAddress
        self.layerFetcher = layerFetcher
    }
}
