import Foundation
import Synchronization
import ZeroMQ

/// What a peer may do on the coordinator, by its CURVE public key.
public struct PeerRoles: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8

    /// Creates roles from their bits.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Registers on the control socket, posts step results, pulls model bytes.
    public static let worker = PeerRoles(rawValue: 1)
    /// Submits jobs and reads, cancels and attaches to its own jobs.
    public static let client = PeerRoles(rawValue: 2)
    /// Everything a client may do, on every job; drains workers, previews plans.
    public static let admin = PeerRoles(rawValue: 4)
    /// Every role (plain mode, and keys in the legacy `--authorized-keys` file).
    public static let all: PeerRoles = [.worker, .client, .admin]

    /// The role names, comma-separated in alphabetical order (e.g. `"admin,client"`).
    public var description: String {
        [(PeerRoles.admin, "admin"), (.client, "client"), (.worker, "worker")]
            .filter { contains($0.0) }.map(\.1).joined(separator: ",")
    }
}

/// The coordinator's sockets as ZAP domains: each admits only the roles that use it.
public enum CoordinatorSocketDomain: String, Sendable, CaseIterable {
    /// Workers register and send heartbeats.
    case control
    /// The last stage posts step results.
    case results
    /// Clients and admins.
    case clients
    /// Workers without the model file pull its bytes.
    case modelSource = "model-source"

    /// The roles this socket admits.
    public var admits: PeerRoles {
        switch self {
        case .control, .results, .modelSource: .worker
        case .clients: [.client, .admin]
        }
    }
}

/// Why an allow-list file cannot be used.
public struct AccessListError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong, naming the file and line.
    public let description: String
}

/// The coordinator's allow-lists: which CURVE public keys are workers, clients and admins.
///
/// Files hold one Z85 public key (40 characters) per line, optionally followed by a comment;
/// `#` lines and blank lines are skipped (`caravanctl keygen --role` appends to them). A key may
/// be in several files. Keys in the legacy `allRoles` file (`--authorized-keys`) have every role.
/// With `openClients`, a key in no file is a client.
///
/// The files are read again when they change (checked when a peer connects, with every message
/// received, and every heartbeat interval): a new worker or client key is admitted without a
/// restart, and a removed key's next message is refused, on connections already open too (the
/// coordinator drops a removed worker from its membership).
public final class AccessList: Sendable {
    /// The allow-list files (nil: none given).
    public struct Files: Sendable, Equatable {
        /// `authorized_workers`.
        public var workers: String?
        /// `authorized_clients`.
        public var clients: String?
        /// `authorized_admins`.
        public var admins: String?
        /// The legacy `authorized_keys`: every role.
        public var allRoles: String?

        /// The files given.
        public init(workers: String? = nil, clients: String? = nil, admins: String? = nil, allRoles: String? = nil) {
            self.workers = workers
            self.clients = clients
            self.admins = admins
            self.allRoles = allRoles
        }

        var entries: [(String, PeerRoles)] {
            [(workers, PeerRoles.worker), (clients, .client), (admins, .admin), (allRoles, .all)]
                .compactMap { path, roles in path.map { ($0, roles) } }
        }
    }

    private struct Table: Sendable {
        var roles: [String: PeerRoles] = [:]
        /// Modification time, size and inode of each file when last read.
        var stamps: [String: [Int]] = [:]
        /// Why the last re-read failed, until ``takeReloadError()`` takes it.
        var unreported: AccessListError?
    }

    /// The files read.
    public let files: Files
    /// Whether a key in no list is a client (`--open-clients`).
    public let openClients: Bool
    private let table: Mutex<Table>

    /// Reads `files`; throws when one cannot be read or holds a line that is not a key.
    public init(files: Files, openClients: Bool) throws(AccessListError) {
        self.files = files
        self.openClients = openClients
        let (roles, stamps) = try Self.read(files)
        table = Mutex(Table(roles: roles, stamps: stamps))
    }

    /// The roles of `key` (Z85), from the lists as last read.
    public func roles(of key: String) -> PeerRoles {
        let listed = table.withLock { $0.roles[key] } ?? []
        return openClients ? listed.union(.client) : listed
    }

    /// Keys listed for each role (for the start-up log).
    public var counts: (workers: Int, clients: Int, admins: Int) {
        table.withLock { t in
            (t.roles.values.filter { $0.contains(.worker) }.count, t.roles.values.filter { $0.contains(.client) }.count,
             t.roles.values.filter { $0.contains(.admin) }.count)
        }
    }

    /// The ZAP decision for `key` connecting to the socket of `domain`: admitted (User-Id = the
    /// key) when one of its roles uses that socket. Re-reads changed files first; a file that
    /// became unreadable or invalid keeps the previous list (`onReloadError`).
    public func resolve(domain: String, key: String, onReloadError: (AccessListError) -> Void = { _ in })
        -> Result<String, ZAPRefusal> {
        do {
            try reloadIfChanged()
        } catch {
            onReloadError(error)
        }
        guard let socket = CoordinatorSocketDomain(rawValue: domain) else {
            return .failure(ZAPRefusal("unknown ZAP domain '\(domain)'"))
        }
        let roles = roles(of: key)
        guard !roles.intersection(socket.admits).isEmpty else {
            let has = roles.isEmpty ? "a key in no allow-list" : "a key with role \(roles)"
            return .failure(ZAPRefusal("\(has) may not use the \(domain) socket (it admits \(socket.admits))"))
        }
        return .success(key)
    }

    /// Re-reads the files when one changed since the last read (by modification time, size and
    /// inode: a few `stat` calls). A file that cannot be read or holds a bad line keeps the
    /// previous lists and throws, once per change (it is read again when it changes again).
    public func reloadIfChanged() throws(AccessListError) {
        let current = Dictionary(files.entries.map { ($0.0, Self.stamp($0.0)) }, uniquingKeysWith: { a, _ in a })
        guard current != table.withLock({ $0.stamps }) else { return }
        do {
            let (roles, stamps) = try Self.read(files)
            table.withLock { t in
                t.roles = roles
                t.stamps = stamps
            }
        } catch {
            table.withLock { t in
                t.stamps = current
                t.unreported = error
            }
            throw error
        }
    }

    /// Re-reads changed files (``reloadIfChanged()``) before a message is checked; a failure is
    /// kept for ``takeReloadError()``.
    public func refresh() {
        try? reloadIfChanged()
    }

    /// Why the lists could not be re-read since the last call, if they could not (for the log).
    public func takeReloadError() -> AccessListError? {
        table.withLock { t in
            defer { t.unreported = nil }
            return t.unreported
        }
    }

    private static func stamp(_ path: String) -> [Int] {
        var st = stat()
        guard stat(path, &st) == 0 else { return [] }
        return [Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec), Int(st.st_size), Int(st.st_ino)]
    }

    private static func read(_ files: Files) throws(AccessListError) -> ([String: PeerRoles], [String: [Int]]) {
        var roles: [String: PeerRoles] = [:]
        var stamps: [String: [Int]] = [:]
        for (path, role) in files.entries {
            stamps[path] = stamp(path)
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw AccessListError(description: "cannot read the allow-list \(path): \(error.localizedDescription)")
            }
            for key in try parse(text, file: path) { roles[key, default: []].formUnion(role) }
        }
        return (roles, stamps)
    }

    /// The keys in an allow-list file's `text`: the first word of each line that is neither blank
    /// nor a `#` comment, each a 40-character Z85 CURVE public key.
    public static func parse(_ text: String, file: String) throws(AccessListError) -> [String] {
        var keys: [String] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let key = String(trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })[0])
            guard key.utf8.count == 40, let bytes = Z85.decode(key), bytes.count == 32 else {
                throw AccessListError(description: "\(file):\(n + 1): '\(key.prefix(60))' is not a 40-character Z85 public key")
            }
            keys.append(key)
        }
        return keys
    }
}

extension AccessList {
    /// Why a CURVE coordinator with `access` must not start, or nil: secure by default, it needs
    /// a worker list and a client list (or `--open-clients`, said loudly).
    public static func startupProblem(_ access: AccessList?) -> String? {
        let files = access?.files ?? Files()
        guard files.workers != nil || files.allRoles != nil else {
            return "no worker allow-list: give --authorized-workers FILE (public keys of the workers, "
                + "see `caravanctl keygen --role worker`), or --insecure for a trusted network"
        }
        guard files.clients != nil || files.allRoles != nil || access?.openClients == true else {
            return "no client allow-list: give --authorized-clients FILE (see `caravanctl keygen --role client`), "
                + "or --open-clients to let any key that knows the coordinator's public key submit jobs"
        }
        return nil
    }

    /// How clients are admitted: "lists", "open" or "plain" (for logs and `caravanctl status`).
    public static func clientAccess(_ access: AccessList?) -> String {
        guard let access else { return "plain" }
        return access.openClients ? "open" : "lists"
    }
}

/// Who sent a message: its CURVE key (empty in plain mode) and roles.
public struct Caller: Sendable, Equatable {
    /// The sender's Z85 public key; empty in plain mode (no keys), where every caller has every
    /// role and every job has the owner "".
    public let key: String
    /// What the sender may do.
    public let roles: PeerRoles

    /// A caller with `key` and `roles`.
    public init(key: String, roles: PeerRoles) {
        self.key = key
        self.roles = roles
    }

    /// A plain-mode caller: every role.
    public static let plain = Caller(key: "", roles: .all)

    /// Whether this caller may read, cancel or attach to a job owned by `owner`.
    public func mayTouch(jobOwnedBy owner: String) -> Bool { roles.contains(.admin) || owner == key }
}

extension AccessList {
    /// The caller of a received message: from the ZAP User-Id of its frames (the key) and the
    /// lists; `.plain` when there is no access list (plain mode). A CURVE frame without a User-Id
    /// cannot happen with the handler running; it gets no role.
    static func caller(of frames: [Message], access: AccessList?) -> Caller {
        caller(identity: frames.dropFirst().first?.userID ?? frames.first?.userID, access: access)
    }

    /// The caller of a message whose link proved `identity` (a ``CaravanTransport/Delivery``'s),
    /// by the lists as they are now (changed files are re-read first).
    static func caller(identity: String?, access: AccessList?) -> Caller {
        guard let access else { return .plain }
        access.refresh()
        guard let key = identity else { return Caller(key: "", roles: []) }
        return Caller(key: key, roles: access.roles(of: key))
    }
}
