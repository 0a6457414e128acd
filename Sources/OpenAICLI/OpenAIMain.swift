/// The `caravan-openai` command line (its executable's `main.swift` only calls ``main()``).
public enum OpenAIMain {
    /// Parses this process's arguments and serves the HTTP API.
    public static func main() async { await CaravanOpenAI.main() }
}
