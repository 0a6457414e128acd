/// The `caravan` command line (its executable's `main.swift` only calls ``main()``).
public enum CaravanMain {
    /// Parses this process's arguments and runs the command they name.
    public static func main() async { await CaravanCommand.main() }
}
