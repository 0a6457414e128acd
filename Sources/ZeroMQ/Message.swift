import CZeroMQ
import Synchronization

/// One ZeroMQ message frame (`zmq_msg_t` in stable heap storage).
///
/// A `Message` is immutable once created: sending it shares its content with libzmq (by reference
/// for large frames, see `zmq_msg_copy`) and leaves the `Message` readable, which is why it may be
/// passed between tasks. Received frames are not copied out of libzmq until ``bytes`` is read;
/// ``withUnsafeBytes(_:)`` reads them in place.
public final class Message: @unchecked Sendable {
    /// Heap storage: libzmq keeps small messages inside the struct, so it must never move.
    let msg: UnsafeMutablePointer<zmq_msg_t>
    /// True when more frames of the same multipart message follow (set when received).
    public let hasMore: Bool

    /// An empty frame.
    public convenience init() {
        self.init(count: 0) { _ in }
    }

    /// A frame holding a copy of `bytes`.
    public convenience init(_ bytes: [UInt8]) {
        self.init(count: bytes.count) { dest in
            bytes.withUnsafeBytes { src in
                if src.count > 0 { dest.copyMemory(from: src) }
            }
        }
    }

    /// A frame holding the UTF-8 bytes of `string` (no terminating NUL).
    public convenience init(_ string: String) {
        self.init(Array(string.utf8))
    }

    /// A frame of `count` bytes filled by `fill` (libzmq allocates the storage; one copy at most).
    public init(count: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) {
        precondition(count >= 0, "negative message size")
        msg = .allocate(capacity: 1)
        let rc = zmq_msg_init_size(msg, count)
        // Only fails with ENOMEM, which Swift treats as fatal everywhere else too.
        precondition(rc == 0, "zmq_msg_init_size(\(count)) failed: \(ZMQError.last("zmq_msg_init_size"))")
        if count > 0, let data = zmq_msg_data(msg) {
            fill(UnsafeMutableRawBufferPointer(start: data, count: count))
        }
        hasMore = false
    }

    /// A zero-copy frame whose content is `buffer` itself: libzmq reads it in place and releases
    /// the buffer (through the free callback) when it is done with it. The buffer is sealed: it must
    /// not be written again.
    public init(zeroCopy buffer: FrameBuffer) {
        msg = .allocate(capacity: 1)
        buffer.seal()
        // The hint carries a +1 reference to the buffer; the C callback drops it.
        let hint = Unmanaged.passRetained(buffer).toOpaque()
        let free: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, hint in
            guard let hint else { return }
            Unmanaged<FrameBuffer>.fromOpaque(hint).release()
        }
        let rc = zmq_msg_init_data(msg, buffer.base, buffer.count, free, hint)
        precondition(rc == 0, "zmq_msg_init_data failed: \(ZMQError.last("zmq_msg_init_data"))")
        hasMore = false
    }

    /// A zero-copy frame over `bytes`, memory that `owner` keeps valid and unchanged for as long
    /// as `owner` lives (e.g. a read-only file mapping): libzmq reads it in place and `owner` is
    /// kept alive until libzmq is done with the frame.
    public init(borrowing bytes: UnsafeRawBufferPointer, owner: AnyObject & Sendable) {
        msg = .allocate(capacity: 1)
        guard let base = bytes.baseAddress, bytes.count > 0 else {
            zmq_msg_init(msg)
            hasMore = false
            return
        }
        // The hint carries a +1 reference to the owner; the C callback drops it.
        let hint = Unmanaged.passRetained(owner as AnyObject).toOpaque()
        let free: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, hint in
            guard let hint else { return }
            Unmanaged<AnyObject>.fromOpaque(hint).release()
        }
        let rc = zmq_msg_init_data(msg, UnsafeMutableRawPointer(mutating: base), bytes.count, free, hint)
        precondition(rc == 0, "zmq_msg_init_data failed: \(ZMQError.last("zmq_msg_init_data"))")
        hasMore = false
    }

    /// Takes over an initialised `zmq_msg_t` (used by receive).
    init(taking storage: UnsafeMutablePointer<zmq_msg_t>, hasMore: Bool) {
        msg = storage
        self.hasMore = hasMore
    }

    deinit {
        zmq_msg_close(msg)
        msg.deallocate()
    }

    /// Size of the frame in bytes.
    public var count: Int { zmq_msg_size(msg) }

    /// Calls `body` with the frame's bytes, in place (no copy). Do not let the pointer escape.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let size = zmq_msg_size(msg)
        guard size > 0, let data = zmq_msg_data(msg) else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return try body(UnsafeRawBufferPointer(start: UnsafeRawPointer(data), count: size))
    }

    /// A copy of the frame's bytes.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The frame decoded as UTF-8 (invalid sequences repaired).
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    /// A metadata property of a received frame (`zmq_msg_gets`), e.g. `"User-Id"` (what the ZAP
    /// handler answered for the connection it came on) or `"Peer-Address"`; nil when the frame has
    /// no such property (frames made locally, NULL connections without ZAP).
    public func metadata(_ property: String) -> String? {
        guard let value = zmq_msg_gets(msg, property) else { return nil }
        return String(cString: value)
    }

    /// The ZAP user id of the connection this frame came on (``ZAPAuthenticator``), nil when none.
    public var userID: String? {
        guard let id = metadata("User-Id"), !id.isEmpty else { return nil }
        return id
    }

    /// The file descriptor of the connection a received frame came on (`zmq_msg_get(ZMQ_SRCFD)`;
    /// deprecated in libzmq but present in 4.3), nil for frames made locally or that came on no
    /// TCP/IPC connection (a ROUTER's routing-id frame may have none: read a frame after it). A descriptor names a connection only while it is open: the kernel gives
    /// the number to the next connection after a close (see ``ConnectionTable``).
    public var sourceFileDescriptor: Int32? {
        let fd = zmq_msg_get(msg, ZMQ_SRCFD)
        return fd >= 0 ? fd : nil
    }

    /// Makes a fresh `zmq_msg_t` sharing this frame's content, for `zmq_msg_send` to consume.
    func makeSendCopy() -> UnsafeMutablePointer<zmq_msg_t> {
        let copy = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        zmq_msg_init(copy)
        let rc = zmq_msg_copy(copy, msg)
        precondition(rc == 0, "zmq_msg_copy failed: \(ZMQError.last("zmq_msg_copy"))")
        return copy
    }
}

/// A heap buffer (64-byte aligned) that can be sent without copying (``Message/init(zeroCopy:)``).
///
/// Fill it with ``withUnsafeMutableBytes(_:)``, then send it; after that it is sealed and only
/// readable, because libzmq may still be reading it from its I/O thread.
public final class FrameBuffer: @unchecked Sendable {
    /// Number of bytes.
    public let count: Int
    /// Start of the storage (never nil, even for `count == 0`).
    let base: UnsafeMutableRawPointer
    private let sealed = Atomic<Bool>(false)

    /// Alignment of the storage in bytes.
    public static let alignment = 64

    /// A zero-filled buffer of `count` bytes.
    public init(count: Int) {
        precondition(count >= 0, "negative buffer size")
        self.count = count
        base = .allocate(byteCount: max(count, 1), alignment: Self.alignment)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
    }

    /// A buffer holding a copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(count: bytes.count)
        if let src = bytes.baseAddress, bytes.count > 0 { base.copyMemory(from: src, byteCount: bytes.count) }
    }

    /// A buffer holding a copy of `bytes`.
    public convenience init(copying bytes: [UInt8]) {
        self.init(count: bytes.count)
        bytes.withUnsafeBytes { src in
            if let p = src.baseAddress, src.count > 0 { base.copyMemory(from: p, byteCount: src.count) }
        }
    }

    deinit { base.deallocate() }

    /// True once the buffer was handed to libzmq; writing is then a programmer error.
    public var isSealed: Bool { sealed.load(ordering: .acquiring) }

    func seal() { sealed.store(true, ordering: .releasing) }

    /// Writes the buffer in place. Precondition: not yet sent.
    public func withUnsafeMutableBytes<R, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        precondition(!isSealed, "FrameBuffer written after it was handed to libzmq")
        return try body(UnsafeMutableRawBufferPointer(start: base, count: count))
    }

    /// Reads the buffer in place.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: UnsafeRawPointer(base), count: count))
    }
}
