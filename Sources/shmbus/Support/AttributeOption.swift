import ArgumentParser
import ShmBus

/// `--attribute`: one chunk attribute as the command line takes it. The type goes
/// after the name, since the value alone cannot say whether `640` is a string:
/// `NAME=TEXT` (a string), `NAME:int=N`, `NAME:ints=N,N,…`, `NAME:float=X`.
struct AttributeOption: ExpressibleByArgument, Sendable {
    var name: String
    var value: ChunkAttributes.Value

    init?(argument: String) {
        guard let equals = argument.firstIndex(of: "=") else { return nil }
        let head = argument[..<equals]
        let text = String(argument[argument.index(after: equals)...])
        let parts = head.split(separator: ":", maxSplits: 1).map(String.init)
        guard let name = parts.first, !name.isEmpty else { return nil }
        self.name = name
        switch parts.count == 2 ? parts[1] : "string" {
        case "string": value = .string(text)
        case "int":
            guard let n = Int64(text) else { return nil }
            value = .integer(n)
        case "ints":
            let items = text.isEmpty ? [] : text.split(separator: ",", omittingEmptySubsequences: false).map { Int64($0) }
            guard !items.contains(nil) else { return nil }
            value = .integers(items.compactMap { $0 })
        case "float":
            guard let d = Double(text) else { return nil }
            value = .double(d)
        default: return nil
        }
    }

    static var defaultCompletionKind: CompletionKind { .default }

    /// The options in the order given (a name given twice keeps the last value).
    static func attributes(_ options: [AttributeOption]) -> ChunkAttributes {
        var attributes = ChunkAttributes()
        for option in options { attributes[option.name] = option.value }
        return attributes
    }
}
