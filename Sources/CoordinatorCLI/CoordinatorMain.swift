/// The `caravan-coordinator` command line (its executable's `main.swift` only calls ``main()``).
public enum CoordinatorMain {
    /// Reads `--config FILE` into this process's arguments, parses them and runs the coordinator.
    public static func main() async { await CoordinatorCommand.mainReadingConfigFile() }
}
