import Foundation

/// Why a config file cannot be used.
public struct ConfigFileError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong, naming the file and line.
    public let description: String
}

/// A daemon's `--config FILE`: `key = value` lines whose keys are the daemon's long option names
/// without the dashes, `#` comments and blank lines. A flag takes `true` (given) or `false`
/// (omitted); a repeatable option (e.g. the worker's `model`) may have several lines; a value may
/// be wrapped in double quotes. Options given on the command line override the file's values.
///
/// ```
/// # /etc/caravan/worker.conf
/// coordinator = tcp://10.0.0.1:7000
/// coordinator-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
/// model = /var/lib/caravan/models/llama.gguf
/// insecure = false
/// ```
public struct ConfigFile: Sendable, Equatable {
    /// One `key = value` line.
    public struct Entry: Sendable, Equatable {
        /// The option name (without `--`).
        public var key: String
        /// Its value, unquoted.
        public var value: String
        /// Line number in the file (1-based).
        public var line: Int
    }

    /// The entries in file order.
    public var entries: [Entry]

    /// The long option names (`--name`) a command's help text mentions.
    public static func optionNames(inHelp help: String) -> Set<String> {
        var names = Set<String>()
        var rest = Substring(help)
        while let r = rest.range(of: "--") {
            let name = rest[r.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            if let first = name.first, first.isLetter { names.insert(String(name)) }
            rest = rest[r.upperBound...]
        }
        return names
    }

    /// Parses the text of a config file (`name` is used in error messages).
    public static func parse(_ text: String, name: String) throws(ConfigFileError) -> ConfigFile {
        var entries: [Entry] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigFileError(description: "\(name):\(i + 1): expected 'key = value', got '\(line)'")
            }
            var key = line[..<eq].trimmingCharacters(in: .whitespaces)
            if key.hasPrefix("--") { key.removeFirst(2) }
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw ConfigFileError(description: "\(name):\(i + 1): '\(key)' is not an option name")
            }
            guard key != "config" else { throw ConfigFileError(description: "\(name):\(i + 1): a config file cannot name another") }
            entries.append(Entry(key: key, value: value, line: i + 1))
        }
        return ConfigFile(entries: entries)
    }

    /// Command-line arguments: the file's entries as `--key=value` (`--key` for `true`, nothing for
    /// `false`), except keys that `arguments` already gives, followed by `arguments`. The `=` form
    /// keeps a value that starts with `-` (a Z85 key may) from being read as an option.
    public func merged(with arguments: [String]) -> [String] {
        let given = Set(arguments.compactMap { arg -> String? in
            guard arg.hasPrefix("--") else { return nil }
            return String(arg.dropFirst(2).prefix { $0 != "=" })
        })
        var out: [String] = []
        for e in entries where !given.contains(e.key) {
            switch e.value.lowercased() {
            case "true": out.append("--\(e.key)")
            case "false": break
            default: out.append("--\(e.key)=\(e.value)")
            }
        }
        return out + arguments
    }

    /// This process's command line (without the program name), its `--config FILE` expanded; the
    /// keys a file may hold are the long options `help` (the command's help text) names.
    public static func commandLine(help: String) throws(ConfigFileError) -> [String] {
        try expand(Array(CommandLine.arguments.dropFirst()), knownKeys: optionNames(inHelp: help))
    }

    /// Expands the `--config FILE` (or `--config=FILE`) of a command line (without the program
    /// name): the file's values come first, the command line overrides them. Without `--config`
    /// the arguments are returned unchanged. With `knownKeys`, a key outside it is an error naming
    /// the file and line.
    public static func expand(_ arguments: [String], knownKeys: Set<String>? = nil) throws(ConfigFileError) -> [String] {
        var path: String?
        for (i, arg) in arguments.enumerated() {
            if arg == "--config" {
                guard i + 1 < arguments.count else { throw ConfigFileError(description: "--config needs a file") }
                path = arguments[i + 1]
            } else if arg.hasPrefix("--config=") {
                path = String(arg.dropFirst("--config=".count))
            }
        }
        guard let path else { return arguments }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigFileError(description: "cannot read the config file \(path)")
        }
        let file = try parse(text, name: path)
        if let knownKeys, let bad = file.entries.first(where: { !knownKeys.contains($0.key) }) {
            throw ConfigFileError(description: "\(path):\(bad.line): unknown option '\(bad.key)' (known: "
                + knownKeys.subtracting(["config", "help"]).sorted().joined(separator: ", ") + ")")
        }
        return file.merged(with: arguments)
    }
}
