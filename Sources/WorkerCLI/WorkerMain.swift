/// The `caravan-worker` command line (its executable's `main.swift` only calls ``main()``).
public enum WorkerMain {
    /// Reads `--config FILE` into this process's arguments, parses them and runs the worker.
    public static func main() async { await WorkerCommand.mainReadingConfigFile() }
}
