import XCTest
import Synchronization
@testable import ZeroMQ

/// The ZAP allow-list replaced at run time, with real CURVE sockets on 127.0.0.1 (what a worker's
/// data socket does when a new stage assignment arrives).
final class ZAPAllowListTests: XCTestCase {
    /// Decisions of a ZAP handler, recorded from its thread.
    private final class Recorder: Sendable {
        private let decisions = Mutex<[ZAPDecision]>([])
        func append(_ d: ZAPDecision) { decisions.withLock { $0.append(d) } }
        var all: [ZAPDecision] { decisions.withLock { $0 } }
    }

    /// A CURVE server ROUTER on a loopback port with a ZAP handler; the decisions it made.
    private final class Server {
        let context: Context
        let keys: CurveKeyPair
        let auth: ZAPAuthenticator
        let router: Socket
        let endpoint: String
        private let seen = Recorder()

        init(allowed: Set<String>) throws {
            context = try Context()
            keys = try CurveKeyPair.generate()
            let seen = self.seen
            auth = try ZAPAuthenticator(context: context, allowedClientKeys: allowed, allowNull: false) { d in
                seen.append(d)
            }
            router = try Socket(context: context, type: .router)
            try router.apply(.curveServer(keys: keys))
            try router.set(.receiveTimeout, 500)
            try router.bind("tcp://127.0.0.1:*")
            endpoint = try router.lastEndpoint
        }

        var decisions: [ZAPDecision] { seen.all }

        /// A DEALER using `clientKeys`, connected to the server.
        func client(_ clientKeys: CurveKeyPair) throws -> Socket {
            let dealer = try Socket(context: context, type: .dealer)
            try dealer.apply(.curveClient(keys: clientKeys, serverPublicKey: keys.publicKey))
            try dealer.set(.receiveTimeout, 2000)
            try dealer.set(.linger, 0)
            try dealer.connect(endpoint)
            return dealer
        }

        /// Sends `text` from `dealer`; returns whether the server received it within `timeout`
        /// seconds (and answered it, checking the reply comes back); false when it cannot be sent.
        func exchange(_ dealer: Socket, _ text: String, timeout: TimeInterval) throws -> Bool {
            // A refused connection leaves the DEALER without a peer: nothing can be queued.
            guard (try? dealer.send([Array(text.utf8)], dontWait: true)) != nil else { return false }
            let end = Date().addingTimeInterval(timeout)
            while Date() < end {
                guard let frames = try? router.receive() else { continue }
                XCTAssertEqual(frames.last?.string, text)
                try router.send([frames[0], Message("re: " + text)])
                XCTAssertEqual(try dealer.receive().last?.string, "re: " + text)
                return true
            }
            return false
        }

        func close(_ sockets: Socket...) {
            for s in sockets { s.close() }
            router.close()
            auth.stop()
        }
    }

    func testReplacingTheSetRefusesTheOldKeyOnANewConnection() throws {
        let first = try CurveKeyPair.generate()
        let second = try CurveKeyPair.generate()
        let server = try Server(allowed: [first.publicKey])

        let admitted = try server.client(first)
        XCTAssertTrue(try server.exchange(admitted, "from first", timeout: 3), "an admitted key must get through")
        let stranger = try server.client(second)
        XCTAssertFalse(try server.exchange(stranger, "from second", timeout: 0.8), "an unknown key must not get through")
        XCTAssertTrue(server.decisions.contains { !$0.allowed && $0.clientKey == second.publicKey && $0.address == "127.0.0.1" },
                      "\(server.decisions)")

        try server.auth.setAllowed([second.publicKey])
        XCTAssertEqual(server.auth.allowedKeys, [second.publicKey])
        let again = try server.client(first)
        XCTAssertFalse(try server.exchange(again, "first again", timeout: 0.8), "a key removed from the set must be refused on a new connection")
        XCTAssertEqual(server.decisions.filter { !$0.allowed && $0.clientKey == first.publicKey }.isEmpty, false)
        let newcomer = try server.client(second)
        XCTAssertTrue(try server.exchange(newcomer, "second, admitted now", timeout: 3))
        // ZAP decides at the handshake only: the connection admitted before the change stays up.
        XCTAssertTrue(try server.exchange(admitted, "first, old connection", timeout: 3))
        server.close(admitted, stranger, again, newcomer)
    }

    func testARefusedConnectionStaysRefusedAfterItsKeyIsAdmitted() throws {
        // libzmq does not retry a handshake the ZAP handler refused: a stage must not connect to
        // the next one before that one admits its key (workers connect at the first step).
        let late = try CurveKeyPair.generate()
        let server = try Server(allowed: [])
        let early = try server.client(late)
        XCTAssertFalse(try server.exchange(early, "too early", timeout: 0.6))
        XCTAssertTrue(server.decisions.contains { !$0.allowed && $0.clientKey == late.publicKey })
        try server.auth.setAllowed([late.publicKey])
        XCTAssertFalse(try server.exchange(early, "still refused", timeout: 1.0),
                       "the refused connection was retried: connecting early would then be harmless")
        let onTime = try server.client(late)
        XCTAssertTrue(try server.exchange(onTime, "on time", timeout: 3), "a new connection with an admitted key gets through")
        server.close(early, onTime)
    }
}
