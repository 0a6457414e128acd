import ArgumentParser

/// A daemon's command that takes `--config FILE` (``ConfigFile``): the file's `key = value` lines
/// become options, and the command line overrides them.
public protocol ConfigFileCommand: AsyncParsableCommand {}

extension ConfigFileCommand {
    /// Reads `--config FILE` into this process's command line (the keys a file may hold are the
    /// long options the command's help names), then parses and runs the command.
    public static func mainReadingConfigFile() async {
        do {
            await main(try ConfigFile.commandLine(help: helpMessage(columns: 10_000)))
        } catch {
            exit(withError: ValidationError("\(error)"))
        }
    }
}
