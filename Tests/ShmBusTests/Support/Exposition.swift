import Foundation
import Testing

/// Prometheus text as a scraper reads it: every sample line `name{labels} value`, each
/// family announced by a `# TYPE` line before its samples. A line of any other form is
/// recorded as an issue, so a malformed exposition fails the test that reads it.
struct Exposition {
    /// Sample values by `name{labels}` as written (or `name` alone).
    var samples: [String: Double] = [:]
    /// Family types by name: counter, gauge…
    var types: [String: String] = [:]

    init(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? (\S+)$/
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") { continue }
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                if parts.count == 4 { types[String(parts[2])] = String(parts[3]) } else { Issue.record("bad TYPE line: \(line)", sourceLocation: sourceLocation) }
                continue
            }
            guard let match = line.wholeMatch(of: sample), let value = Double(match.output.3) else {
                Issue.record("not a sample line: \(line)", sourceLocation: sourceLocation)
                continue
            }
            let name = String(match.output.1)
            if types[name] == nil, !Self.isHistogramSample(name, types) {
                Issue.record("\(name) has no TYPE line before it", sourceLocation: sourceLocation)
            }
            samples[name + String(match.output.2 ?? "")] = value
        }
    }

    subscript(_ key: String) -> Double? { samples[key] }

    /// Whether `name` is a `_bucket`, `_sum` or `_count` sample of a histogram family.
    private static func isHistogramSample(_ name: String, _ types: [String: String]) -> Bool {
        ["_bucket", "_sum", "_count"].contains { suffix in
            name.hasSuffix(suffix) && types[String(name.dropLast(suffix.count))] == "histogram"
        }
    }
}
