import XCTest
import Synchronization
@testable import ZeroMQ

/// A ZAP resolver deciding by socket domain and key, and the User-Id it returns arriving as
/// metadata on every received frame (what the coordinator's per-message role checks read).
final class ZAPUserIDTests: XCTestCase {
    func testTheResolverDecidesPerDomainAndItsUserIdTravelsWithTheFrames() throws {
        let context = try Context()
        let server = try CurveKeyPair.generate()
        let worker = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        let domains = Mutex<[String]>([])
        let auth = try ZAPAuthenticator(context: context, resolver: { domain, key in
            domains.withLock { $0.append(domain) }
            switch (domain, key) {
            case ("control", worker.publicKey): return .success("w:" + key)
            case ("clients", client.publicKey): return .success("c:" + key)
            default: return .failure(ZAPRefusal("\(key) may not use \(domain)"))
            }
        })
        defer { auth.stop() }
        func router(_ domain: String) throws -> (Socket, String) {
            let s = try Socket(context: context, type: .router)
            try s.apply(.curveServer(keys: server))
            try s.set(.zapDomain, domain)
            try s.set(.receiveTimeout, 2000)
            try s.bind("tcp://127.0.0.1:*")
            return (s, try s.lastEndpoint)
        }
        func dealer(_ keys: CurveKeyPair, _ endpoint: String) throws -> Socket {
            let d = try Socket(context: context, type: .dealer)
            try d.apply(.curveClient(keys: keys, serverPublicKey: server.publicKey))
            try d.connect(endpoint)
            return d
        }
        let (control, controlEndpoint) = try router("control")
        let (clients, clientsEndpoint) = try router("clients")
        defer { control.close(); clients.close() }

        let w = try dealer(worker, controlEndpoint)
        try w.send([Array("register".utf8)])
        let frames = try control.receive()
        XCTAssertEqual(frames.last?.string, "register")
        XCTAssertEqual(frames.last?.userID, "w:" + worker.publicKey)
        XCTAssertNil(Message("local").userID, "a frame made locally has no User-Id")

        let c = try dealer(client, clientsEndpoint)
        try c.send([Array("submit".utf8)])
        XCTAssertEqual(try clients.receive().last?.userID, "c:" + client.publicKey)

        // The client's key on the worker socket: refused, nothing arrives.
        let wrong = try dealer(client, controlEndpoint)
        _ = try? wrong.send([Array("register".utf8)], dontWait: true)
        try control.set(.receiveTimeout, 700)
        XCTAssertNil(try? control.receive(), "a key was admitted on a socket its role does not use")
        XCTAssertTrue(domains.withLock { $0.contains("control") && $0.contains("clients") })
        for s in [w, c, wrong] { s.close() }
    }
}
