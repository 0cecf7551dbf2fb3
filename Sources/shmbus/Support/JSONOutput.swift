import Foundation

/// Prints a value as one line of JSON.
enum JSONOutput {
    static func print<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try encoder.encode(value)
        line.append(UInt8(ascii: "\n"))
        try line.withUnsafeBytes { bytes in try OutputFile.standardOutput().write(bytes) }
    }
}

/// Unbuffered line output, so that piped output shows each line as it happens.
enum Output {
    /// One line to stdout; a failed write (`> /dev/full`, a closed terminal) is an
    /// error of kind `cannotCreate` (exit 73), not a crash or a silent exit 0.
    static func write(_ text: String) throws(FileFailure) {
        var line = text + "\n"
        // withUTF8 rethrows untyped; carry the typed failure out by hand.
        let failure = line.withUTF8 { bytes -> FileFailure? in
            do throws(FileFailure) {
                try OutputFile.standardOutput().write(UnsafeRawBufferPointer(bytes))
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// One line to stdout, for the demo's report, where a failed write has no better
    /// place to be reported.
    static func line(_ text: String) {
        try? write(text)
    }
}
