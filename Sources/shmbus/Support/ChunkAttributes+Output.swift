import ShmBus

/// A chunk's attributes as the commands print them.
extension ChunkAttributes {
    /// `content-type="image/x-raw" width=640 shape=[2, 3]`, in block order.
    var commandLineText: String {
        entries.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    }

    /// docs/FORMAT.md's JSON column: strings, numbers, arrays of numbers; a float that
    /// JSON cannot hold as a number becomes "nan", "inf" or "-inf".
    var json: [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        for (name, value) in entries {
            switch value {
            case .string(let s): object[name] = .string(s)
            case .integer(let i): object[name] = .integer(i)
            case .integers(let list): object[name] = .array(list.map(JSONValue.integer))
            case .double(let d) where d.isNaN: object[name] = .string("nan")
            case .double(let d) where d.isInfinite: object[name] = .string(d < 0 ? "-inf" : "inf")
            case .double(let d): object[name] = .number(d)
            }
        }
        return object
    }
}
