import XCTest
@testable import ZeroMQ

/// Binds a ROUTER on an ephemeral loopback port and connects a DEALER to it, both with a 2 s
/// receive timeout so that no test can hang.
func makeRouterDealer(
    context: Context,
    router configureRouter: (Socket) throws -> Void = { _ in },
    dealer configureDealer: (Socket) throws -> Void = { _ in }
) throws -> (router: Socket, dealer: Socket, endpoint: String) {
    let router = try Socket(context: context, type: .router)
    try router.set(.receiveTimeout, 2000)
    try configureRouter(router)
    try router.bind("tcp://127.0.0.1:*")
    let endpoint = try router.lastEndpoint
    let dealer = try Socket(context: context, type: .dealer)
    try dealer.set(.receiveTimeout, 2000)
    try dealer.set(.sendTimeout, 2000)
    try configureDealer(dealer)
    try dealer.connect(endpoint)
    return (router, dealer, endpoint)
}

/// Waits (sleeping, bounded) until `condition` holds.
func eventually(timeout: TimeInterval = 2, _ condition: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.01)
    }
    return condition()
}
