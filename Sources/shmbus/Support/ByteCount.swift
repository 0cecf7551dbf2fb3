import ArgumentParser

/// A byte count on the command line: `1048576`, `512K`, `64MiB`, `2G`, `1GB`
/// (K, M, G, T are powers of 1024 with or without `i`/`B`).
struct ByteCount: ExpressibleByArgument, CustomStringConvertible, Sendable {
    var bytes: UInt64

    init(_ bytes: UInt64) { self.bytes = bytes }

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces).uppercased()
        let digits = text.prefix { $0.isNumber }
        guard let value = UInt64(digits) else { return nil }
        var unit = text.dropFirst(digits.count)
        if unit.hasSuffix("B") { unit = unit.dropLast() }
        if unit.hasSuffix("I") { unit = unit.dropLast() }
        let shift: UInt64
        switch unit {
        case "": shift = 0
        case "K": shift = 10
        case "M": shift = 20
        case "G": shift = 30
        case "T": shift = 40
        default: return nil
        }
        let (result, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow else { return nil }
        bytes = result
    }

    var description: String { Self.human(bytes) }

    /// `1.5 GiB`, `300 MiB`, `512 B`.
    static func human(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var index = 0
        while value >= 1024, index < units.count - 1 {
            value /= 1024
            index += 1
        }
        if index == 0 { return "\(bytes) B" }
        let rounded = value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
        return "\(rounded) \(units[index])"
    }
}

import Foundation
