/// The request bookkeeping of a block download as a pure state machine: which blocks to ask for
/// next (at most `window` requests in flight), whether a reply answers a request in flight with
/// the right offset and size, retries of bad, refused or lost chunks, and when to give up. The
/// fetcher does the I/O; every rule here is unit-tested.
public struct ChunkSchedule: Sendable {
    /// A chunk request to send.
    public struct Request: Sendable, Equatable {
        /// Request id (the envelope's `request_id`); unique within the schedule.
        public var id: UInt64
        /// The block it fetches.
        public var block: Int
        /// First byte.
        public var offset: UInt64
        /// Bytes asked for.
        public var length: UInt32
    }

    /// What to do with a received chunk.
    public enum Verdict: Sendable, Equatable {
        /// It answers request `id` for `block`: store it.
        case accept(block: Int)
        /// It answers request `id` but its offset or size is wrong: dropped, the block is asked
        /// for again (or the download fails after too many attempts).
        case reject(reason: String)
        /// It answers no request in flight (a late reply to a request given up on): ignore.
        case ignore
    }

    /// Size of every block but possibly the last.
    public let blockSize: UInt64
    /// Size of the file.
    public let fileSize: UInt64
    /// Most requests in flight.
    public let window: Int
    /// Most times one block is asked for before the download fails.
    public let maxAttempts: Int

    private var waiting: [Int]
    private var inFlight: [UInt64: Request] = [:]
    private var attempts: [Int: Int] = [:]
    private var nextID: UInt64
    /// Blocks received and accepted.
    public private(set) var completed = 0
    /// Bytes received and accepted.
    public private(set) var completedBytes: UInt64 = 0
    /// Requests asked again (after a bad, refused or lost chunk).
    public private(set) var retries = 0
    /// Why the download failed (a block failed `maxAttempts` times), or nil.
    public private(set) var failure: String?
    /// Blocks to fetch in all.
    public let total: Int

    /// A schedule fetching `blocks` of a `fileSize`-byte file cut into `blockSize`-byte blocks.
    public init(blocks: [Int], blockSize: UInt64, fileSize: UInt64, window: Int = 4, maxAttempts: Int = 5,
                firstRequestID: UInt64 = 1) {
        precondition(blockSize > 0 && blockSize <= UInt64(UInt32.max), "block size must fit a chunk request")
        self.blockSize = blockSize
        self.fileSize = fileSize
        self.window = max(1, window)
        self.maxAttempts = max(1, maxAttempts)
        self.waiting = blocks.reversed()
        self.total = blocks.count
        self.nextID = firstRequestID
    }

    /// True when every block was accepted.
    public var isComplete: Bool { completed == total }
    /// Requests in flight.
    public var inFlightCount: Int { inFlight.count }
    /// The id the next request will get.
    public var nextRequestID: UInt64 { nextID }

    /// Requests to send now (filling the window); none after a failure.
    public mutating func nextRequests() -> [Request] {
        var out: [Request] = []
        while failure == nil, inFlight.count < window, let block = waiting.popLast() {
            let bytes = StageByteRanges.blockBytes(block, blockSize: blockSize, fileSize: fileSize)
            let r = Request(id: nextID, block: block, offset: bytes.lowerBound, length: UInt32(bytes.count))
            nextID += 1
            inFlight[r.id] = r
            attempts[block, default: 0] += 1
            out.append(r)
        }
        return out
    }

    /// A chunk arrived for request `id` with `offset` and `count` bytes (its checksum was already
    /// verified by the codec).
    public mutating func received(id: UInt64, offset: UInt64, count: Int) -> Verdict {
        guard let r = inFlight[id] else { return .ignore }
        guard offset == r.offset, count == Int(r.length) else {
            let reason = "chunk for request \(id) has bytes [\(offset), +\(count)), asked for [\(r.offset), +\(r.length))"
            retry(r, reason: reason)
            return .reject(reason: reason)
        }
        inFlight[id] = nil
        completed += 1
        completedBytes += UInt64(count)
        return .accept(block: r.block)
    }

    /// Request `id` failed (a bad chunk that named it, or an error reply): ask again. Unknown ids
    /// are ignored.
    public mutating func failed(id: UInt64, reason: String) {
        guard let r = inFlight[id] else { return }
        retry(r, reason: reason)
    }

    /// No reply came in time: every request in flight is considered lost and asked again.
    public mutating func timedOut() {
        for r in inFlight.values.sorted(by: { $0.id > $1.id }) { retry(r, reason: "no reply in time") }
    }

    private mutating func retry(_ r: Request, reason: String) {
        inFlight[r.id] = nil
        guard attempts[r.block, default: 0] < maxAttempts else {
            failure = failure ?? "block \(r.block) (bytes [\(r.offset), +\(r.length))) failed \(maxAttempts) times; last: \(reason)"
            return
        }
        retries += 1
        waiting.append(r.block)
    }
}
