import CaravanCore

/// The largest frame each daemon socket accepts, for `ZMQ_MAXMSGSIZE`: libzmq then drops a
/// bigger frame (and disconnects its sender) while reading it, before it is buffered whole, so a
/// peer cannot make a daemon hold gigabytes for a frame ``WireCodec`` would refuse afterwards.
///
/// Each limit is the socket's largest legitimate frame (see `docs/protocol.md`, "Frame limits"),
/// plus ``transportOverhead`` for the CURVE box around it.
public enum FrameLimits {
    /// Bytes CURVE adds to a frame on the wire (`MESSAGE` command name, nonce, flags, MAC: 33),
    /// rounded up generously.
    public static let transportOverhead = 1024

    /// Coordinator control socket: one protobuf frame from a worker (`Register` with its models,
    /// `Heartbeat`, `AssignmentReady` with a load error), far below 256 KiB.
    public static func control(_ limits: WireLimits) -> Int {
        min(limits.maxHeaderBytes, 256 << 10) + transportOverhead
    }

    /// Coordinator client socket: one protobuf frame (`JobSubmit` with a prompt or chat of up to
    /// the header limit, 1 MiB by default; admin requests are small).
    public static func clients(_ limits: WireLimits) -> Int { limits.maxHeaderBytes + transportOverhead }

    /// Coordinator model source: `ModelInfoRequest` and `ModelChunkRequest` (a hash and two
    /// numbers, under 200 bytes).
    public static func modelSource(_ limits: WireLimits) -> Int { min(limits.maxHeaderBytes, 4 << 10) + transportOverhead }

    /// Coordinator result socket: a `StepResult` frame, or its logits payload of `[rows,
    /// vocabulary]` F32 for at most `maxRows` rows (capped by the payload limit).
    public static func results(_ limits: WireLimits, maxRows: Int, vocabulary: Int) -> Int {
        let logits = CheckedArithmetic.product(UInt64(max(1, maxRows)), UInt64(max(1, vocabulary)), 4)
            .map { Int(clamping: $0) } ?? Int.max
        return max(limits.maxHeaderBytes, min(limits.maxPayloadBytes, logits)) + transportOverhead
    }

    /// Worker data socket: an `ActivationHeader` frame, or its payload of `[rows, hidden]` F32
    /// activations, at most the payload limit (the socket binds before the worker knows its
    /// model and the coordinator's batch size, so the protocol's limit is the bound).
    public static func data(_ limits: WireLimits) -> Int {
        max(limits.maxHeaderBytes, limits.maxPayloadBytes) + transportOverhead
    }

    /// A worker's control connection and a client's: frames from the coordinator (assignments,
    /// job events, status reports), each at most the header limit.
    public static func fromCoordinator(_ limits: WireLimits) -> Int { limits.maxHeaderBytes + transportOverhead }

    /// A worker's connection to the model source: a `ModelChunk` frame and its payload of at most
    /// `maxChunkBytes` (4 MiB).
    public static func modelChunks(_ limits: WireLimits, maxChunkBytes: Int) -> Int {
        max(limits.maxHeaderBytes, min(limits.maxPayloadBytes, maxChunkBytes)) + transportOverhead
    }
}
