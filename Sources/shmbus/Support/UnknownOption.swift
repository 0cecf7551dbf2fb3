import ArgumentParser
import Foundation

/// An option the command it was given to does not have: `publish --chanel x`.
///
/// argument-parser decodes a command before it looks at the arguments nothing consumed
/// (`CommandParser.parseCurrent`, then `extractLastParsedValue`), so when a command has a
/// required option, a misspelling of it fails decoding first and is reported as
/// "Missing expected argument '--channel <channel>'": the misspelling itself is never
/// named. The root command's `main` asks this type first whenever parsing fails.
struct UnknownOption {
    /// The command the option was given to, and the option as typed (`--chanel`).
    let command: ParsableCommand.Type
    let option: String
    /// The command's own long names, for the suggestion.
    let known: [String]

    /// The first `--name` (or `--name=value`) in `arguments`, before any `--`, that the
    /// command it belongs to does not declare. Only long names: a single dash can begin a
    /// value (`--from -1`), which argument-parser reports well enough by itself.
    static func first(in arguments: [String], root: ParsableCommand.Type) -> UnknownOption? {
        var command = root
        var names = longNames(of: root)
        for argument in arguments {
            if argument == "--" { return nil }
            if argument.hasPrefix("--") {
                let name = String(argument.dropFirst(2).prefix { $0 != "=" })
                if !names.contains(name) { return UnknownOption(command: command, option: "--\(name)", known: names) }
            } else if let sub = command.configuration.subcommands.first(where: { $0._commandName == argument }) {
                command = sub
                names = longNames(of: sub)
            }
        }
        return nil
    }

    /// Every long name `command` accepts, `help` and `version` included, as argument-parser
    /// describes them in its `--experimental-dump-help` JSON (the one public listing).
    private static func longNames(of command: ParsableCommand.Type) -> [String] {
        struct Dump: Decodable {
            struct Command: Decodable { var arguments: [Argument]? }
            struct Argument: Decodable { var names: [Name]? }
            struct Name: Decodable { var kind: String; var name: String }
            var command: Command
        }
        guard let dump = try? JSONDecoder().decode(Dump.self, from: Data(command._dumpHelp().utf8)) else { return [] }
        let names = (dump.command.arguments ?? []).flatMap { $0.names ?? [] }
        return names.filter { $0.kind == "long" }.map(\.name) + ["help", "version", "experimental-dump-help", "generate-completion-script"]
    }

    /// argument-parser's own wording and layout for an unknown option, suggestion
    /// included (a long name fewer than 4 edits away, as argument-parser picks it).
    func message(root: ParsableCommand.Type) -> String {
        let typed = option
        let closest = known.map { "--\($0)" }.map { ($0, Self.editDistance($0, typed)) }.filter { $0.1 < 4 }.min { $0.1 < $1.1 }
        let suggestion = closest.map { ". Did you mean '\($0.0)'?" } ?? ""
        let path = ([root] + Self.path(to: command, from: root)).map { $0._commandName }.joined(separator: " ")
        return """
            Error: Unknown option '\(option)'\(suggestion)
            Usage: \(root.usageString(for: command))
              See '\(path) --help' for more information.
            """
    }

    /// The subcommands from `root` (exclusive) down to `command` (inclusive).
    private static func path(to command: ParsableCommand.Type, from root: ParsableCommand.Type) -> [ParsableCommand.Type] {
        if ObjectIdentifier(command) == ObjectIdentifier(root) { return [] }
        for sub in root.configuration.subcommands {
            if ObjectIdentifier(sub) == ObjectIdentifier(command) { return [sub] }
            let below = path(to: command, from: sub)
            if !below.isEmpty { return [sub] + below }
        }
        return []
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
