/// The channel-name rule (docs/FORMAT.md and DESIGN.md): 1–200 characters of
/// `[A-Za-z0-9_.-/]`, no empty path component, no `..` component.
public enum ChannelName {
    /// nil when `name` is valid; otherwise what is wrong with it.
    public static func problem(with name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "it is empty" }
        if bytes.count > SegmentLayout.maximumChannelLength {
            return "it is \(bytes.count) bytes long; the limit is \(SegmentLayout.maximumChannelLength)"
        }
        for b in bytes {
            let ok = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || b == UInt8(ascii: "-") || b == UInt8(ascii: "/")
            if !ok { return "only A-Z, a-z, 0-9 and _ . - / are allowed" }
        }
        for component in name.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty { return "it has an empty component (leading, trailing or double '/')" }
            if component == ".." { return "it has a '..' component" }
        }
        return nil
    }

    /// Throws ``SegmentError`` (invalid argument) naming the problem.
    public static func validate(_ name: String) throws(SegmentError) {
        if let problem = problem(with: name) {
            throw SegmentError(.invalidArgument, "invalid channel name '\(name.prefix(220))': \(problem)")
        }
    }
}

/// The 16-byte ID of a segment; its name everywhere is the 32 lowercase hex digits.
///
/// Stored as two words, so that a chunk carrying its segment's ID costs no reference
/// counting.
public struct SegmentID: Hashable, Sendable, CustomStringConvertible {
    /// Bytes 0–7 and 8–15, each read as a big-endian number (so that the name, in hex,
    /// lists the bytes in order).
    let high: UInt64
    let low: UInt64

    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.init(unchecked: bytes)
    }

    init(unchecked bytes: [UInt8]) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<8 { high = high << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { low = low << 8 | UInt64(bytes[i]) }
        self.high = high
        self.low = low
    }

    /// The 16 bytes, in order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    /// A random ID (`SystemRandomNumberGenerator`: getrandom(2)).
    public static func random() -> SegmentID {
        var generator = SystemRandomNumberGenerator()
        var id = SegmentID(unchecked: [UInt8](repeating: 0, count: 16))
        while id.isZero { id = SegmentID(high: generator.next(), low: generator.next()) }
        return id
    }

    private init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses 32 hex digits.
    public init?(name: String) {
        let digits = Array(name.utf8)
        guard digits.count == 32 else { return nil }
        var words: [UInt64] = [0, 0]
        for (i, c) in digits.enumerated() {
            guard let v = Self.hex(c) else { return nil }
            words[i / 16] = words[i / 16] << 4 | UInt64(v)
        }
        self.init(high: words[0], low: words[1])
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    public var isZero: Bool { high == 0 && low == 0 }

    /// The segment's name: 32 lowercase hex digits.
    public var name: String {
        func hex(_ word: UInt64) -> String {
            let text = String(word, radix: 16)
            return String(repeating: "0", count: 16 - text.count) + text
        }
        return hex(high) + hex(low)
    }

    public var description: String { name }
}
