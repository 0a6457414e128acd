import XCTest
import Synchronization
@testable import ZeroMQ

final class CurveTests: XCTestCase {
    func testKeyPairGenerationAndDerivation() throws {
        XCTAssertTrue(Context.hasCurve)
        let a = try CurveKeyPair.generate()
        let b = try CurveKeyPair.generate()
        XCTAssertEqual(a.publicKey.utf8.count, 40)
        XCTAssertEqual(a.secretKey.utf8.count, 40)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(try CurveKeyPair.publicKey(forSecretKey: a.secretKey), a.publicKey)
        XCTAssertEqual(try CurveKeyPair(publicKey: a.publicKey, secretKey: a.secretKey), a)
        XCTAssertThrowsError(try CurveKeyPair(publicKey: b.publicKey, secretKey: a.secretKey))
        XCTAssertEqual(Z85.decode(a.publicKey).flatMap { Z85.encode($0) }, a.publicKey)
    }

    /// Server with a ZAP authenticator admitting `allowed`; returns decisions seen.
    private func curveExchange(clientKeys: CurveKeyPair, allowed: Set<String>, waitMilliseconds: Int32) throws -> (received: Bool, decisions: [ZAPDecision]) {
        let context = try Context()
        let serverKeys = try CurveKeyPair.generate()
        let decisions = Mutex<[ZAPDecision]>([])
        let auth = try ZAPAuthenticator(context: context, allowedClientKeys: allowed) { d in
            decisions.withLock { $0.append(d) }
        }
        defer { auth.stop() }
        let (router, dealer, _) = try makeRouterDealer(
            context: context,
            router: { try $0.apply(.curveServer(keys: serverKeys)); try $0.set(.receiveTimeout, waitMilliseconds) },
            dealer: { try $0.apply(.curveClient(keys: clientKeys, serverPublicKey: serverKeys.publicKey)) }
        )
        try dealer.send([Array("secret hello".utf8)], dontWait: true)
        var received = false
        if let frames = try? router.receive() {
            received = true
            XCTAssertEqual(frames.last?.string, "secret hello")
            try router.send([frames[0], Message("secret reply")])
            XCTAssertEqual(try dealer.receive().last?.string, "secret reply")
        }
        router.close()
        dealer.close()
        return (received, decisions.withLock { $0 })
    }

    func testAllowedCurveClientExchangesMessages() throws {
        let client = try CurveKeyPair.generate()
        let result = try curveExchange(clientKeys: client, allowed: [client.publicKey], waitMilliseconds: 3000)
        XCTAssertTrue(result.received)
        XCTAssertEqual(result.decisions.first?.allowed, true)
        XCTAssertEqual(result.decisions.first?.mechanism, "CURVE")
        XCTAssertEqual(result.decisions.first?.clientKey, client.publicKey)
    }

    func testUnknownCurveClientIsRefused() throws {
        let known = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let start = Date()
        let result = try curveExchange(clientKeys: stranger, allowed: [known.publicKey], waitMilliseconds: 700)
        XCTAssertFalse(result.received, "a client with an unknown key must not deliver messages")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertTrue(result.decisions.contains { !$0.allowed && $0.clientKey == stranger.publicKey },
                      "the ZAP handler must have refused the stranger: \(result.decisions)")
    }

    func testAllowListCanChangeAtRunTime() throws {
        let context = try Context()
        let auth = try ZAPAuthenticator(context: context)
        defer { auth.stop() }
        let key = try CurveKeyPair.generate().publicKey
        XCTAssertTrue(auth.allowedKeys.isEmpty)
        try auth.allow(key)
        XCTAssertEqual(auth.allowedKeys, [key])
        try auth.revoke(key)
        XCTAssertTrue(auth.allowedKeys.isEmpty)
        XCTAssertThrowsError(try auth.allow("not a key"))
        // A second handler in the same context cannot bind the ZAP endpoint.
        XCTAssertThrowsError(try ZAPAuthenticator(context: context))
    }

    func testPlainModeWorks() throws {
        let context = try Context()
        let (router, dealer, _) = try makeRouterDealer(
            context: context,
            router: { try $0.apply(.plain) },
            dealer: { try $0.apply(.plain) }
        )
        try dealer.send([Array("plain".utf8)])
        XCTAssertEqual(try router.receive().last?.string, "plain")
    }

    func testCurveClientCannotTalkToPlainServer() throws {
        let context = try Context()
        let serverKeys = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        let (router, dealer, _) = try makeRouterDealer(
            context: context,
            router: { try $0.set(.receiveTimeout, 400) },
            dealer: { try $0.apply(.curveClient(keys: client, serverPublicKey: serverKeys.publicKey)) }
        )
        try dealer.send([Array("x".utf8)], dontWait: true)
        XCTAssertThrowsError(try router.receive())
    }
}
