/// Helpers for ZeroMQ endpoint strings (`tcp://host:port`).
public enum Endpoints {
    /// The endpoint peers can connect to for a bound endpoint: a wildcard host (`0.0.0.0`, `*`,
    /// `[::]`) becomes `127.0.0.1`.
    public static func advertisable(_ bound: String) -> String {
        for wildcard in ["tcp://0.0.0.0:", "tcp://*:", "tcp://[::]:"] where bound.hasPrefix(wildcard) {
            return "tcp://127.0.0.1:" + bound.dropFirst(wildcard.count)
        }
        return bound
    }

    /// `tcp://host:*` for the host of `endpoint` (bind to any free port on the same interface).
    public static func anyPort(like endpoint: String) -> String {
        guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":"),
              colon > endpoint.index(endpoint.startIndex, offsetBy: 5) else { return "tcp://127.0.0.1:*" }
        return String(endpoint[..<colon]) + ":*"
    }
}
