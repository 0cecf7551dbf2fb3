/// What a chunk says it holds: a content type, an array's element type and shape, an
/// image's size and pixel format, and names of the application's own
/// (docs/FORMAT.md, "Attributes").
///
/// Stored in the record, between its key and its payload, so readers learn them from
/// the same mapping before they touch the payload. Entries keep the order they were
/// set in; setting a name again replaces its value in place.
///
/// The typed views (``contentType``, ``array``, ``image``) read and write the
/// well-known names; a chunk read from a segment has passed FORMAT.md's checks, so
/// its views are consistent and fit its payload (for element types and pixel formats
/// this reader knows).
public struct ChunkAttributes: Sendable, Hashable {
    /// One attribute's value; the cases are the block's entry types.
    public enum Value: Sendable, Hashable, CustomStringConvertible {
        case string(String)
        case integer(Int64)
        case integers([Int64])
        case double(Double)

        public var description: String {
            switch self {
            case .string(let s): "\"\(s)\""
            case .integer(let i): String(i)
            case .integers(let list): "[" + list.map(String.init).joined(separator: ", ") + "]"
            case .double(let d): String(d)
            }
        }
    }

    /// The entries in block order.
    public internal(set) var entries: [(name: String, value: Value)] = []

    public init() {}

    /// Attributes from name-value pairs, in that order (a name given twice keeps the
    /// last value).
    public init(_ pairs: KeyValuePairs<String, Value>) {
        for (name, value) in pairs { self[name] = value }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var names: [String] { entries.map(\.name) }

    /// The value of `name`; setting nil removes it.
    public subscript(name: String) -> Value? {
        get { entries.first { $0.name == name }?.value }
        set {
            let index = entries.firstIndex { $0.name == name }
            switch (index, newValue) {
            case (let i?, let value?): entries[i].value = value
            case (let i?, nil): entries.remove(at: i)
            case (nil, let value?): entries.append((name, value))
            case (nil, nil): break
            }
        }
    }

    public static func == (a: ChunkAttributes, b: ChunkAttributes) -> Bool {
        a.entries.elementsEqual(b.entries) { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.name)
            hasher.combine(entry.value)
        }
    }

    // MARK: Well-known names

    /// The payload's media type (`content-type`): `image/png`, `application/json`.
    public var contentType: String? {
        get { if case .string(let s)? = self["content-type"] { s } else { nil } }
        set { self["content-type"] = newValue.map(Value.string) }
    }

    /// The array the payload holds (`dtype`, `shape`, `strides`), if it says so.
    public var array: ArrayLayout? {
        get {
            guard case .string(let dtype)? = self["dtype"], case .integers(let shape)? = self["shape"] else { return nil }
            var strides: [Int]?
            if case .integers(let list)? = self["strides"] { strides = list.map { Int($0) } }
            return ArrayLayout(elementType: ElementType(rawValue: dtype), shape: shape.map { Int($0) }, strides: strides)
        }
        set {
            self["dtype"] = newValue.map { .string($0.elementType.rawValue) }
            self["shape"] = newValue.map { .integers($0.shape.map { Int64($0) }) }
            self["strides"] = newValue?.strides.map { .integers($0.map { Int64($0) }) }
        }
    }

    /// The image the payload holds (`width`, `height`, `stride`, `pixel-format`), if it
    /// says so.
    public var image: ImageLayout? {
        get {
            guard case .integer(let width)? = self["width"], case .integer(let height)? = self["height"],
                case .string(let format)? = self["pixel-format"]
            else { return nil }
            var stride: Int?
            if case .integer(let s)? = self["stride"] { stride = Int(s) }
            return ImageLayout(width: Int(width), height: Int(height), stride: stride, pixelFormat: PixelFormat(fourcc: format))
        }
        set {
            self["width"] = newValue.map { .integer(Int64($0.width)) }
            self["height"] = newValue.map { .integer(Int64($0.height)) }
            self["stride"] = newValue?.stride.map { .integer(Int64($0)) }
            self["pixel-format"] = newValue.map { .string($0.pixelFormat.fourcc) }
        }
    }
}
