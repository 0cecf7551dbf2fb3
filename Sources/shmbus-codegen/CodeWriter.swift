/// Lines of Swift source with indentation, for the emitters.
struct CodeWriter {
    private(set) var text = ""
    private var depth = 0

    mutating func line(_ content: String = "") {
        text += content.isEmpty ? "\n" : String(repeating: "    ", count: depth) + content + "\n"
    }

    /// `///` lines for `doc`, wrapped at about 100 columns; nothing when empty.
    mutating func doc(_ doc: String) {
        guard !doc.isEmpty else { return }
        var current = ""
        for word in doc.split(separator: " ") {
            if !current.isEmpty, current.count + word.count + 1 > 92 - depth * 4 {
                line("/// " + current)
                current = ""
            }
            current += current.isEmpty ? String(word) : " " + word
        }
        if !current.isEmpty { line("/// " + current) }
    }

    /// `public init(a: A, b: B = default…)` assigning each parameter to its property.
    mutating func memberwiseInit(_ fields: [(name: String, type: String)], defaultValue: String? = nil) {
        let parameters = fields.map { "\($0.name): \($0.type)" + (defaultValue.map { " = \($0)" } ?? "") }
        block("public init(\(parameters.joined(separator: ", "))) {") { w in
            for field in fields { w.line("self.\(field.name) = \(field.name)") }
        }
    }

    /// `open`, then the body one level deeper, then `close`.
    mutating func block(_ open: String, close: String = "}", _ body: (inout CodeWriter) throws -> Void) rethrows {
        line(open)
        depth += 1
        try body(&self)
        depth -= 1
        line(close)
    }
}
