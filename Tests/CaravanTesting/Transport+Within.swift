import CaravanTransport

extension Transport {
    /// The next message, or `.timedOut` after `timeout` (a test must not wait forever).
    public func receive(within timeout: Duration) async throws -> Delivery {
        try await withThrowingTaskGroup(of: Delivery?.self) { group in
            group.addTask { try await self.receive() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let delivery = try await group.next() ?? nil else {
                throw TransportError(.timedOut, "no message within \(timeout)")
            }
            return delivery
        }
    }
}
