import SharedSegments

/// docs/BRIDGE.md's subjects: `shmbus.<stream>.<key>.<part>.<channel components…>`, with
/// keys and channel components token-encoded.
public struct SubjectLayout: Sendable, Hashable {
    public let stream: String

    /// `stream` must be 1–32 bytes of `A-Z a-z 0-9 _ -` (a NATS stream name that is also
    /// a safe directory name on the servers).
    public init(stream: String) throws(BridgeError) {
        let bytes = Array(stream.utf8)
        guard (1...32).contains(bytes.count), bytes.allSatisfy(Self.isPlain) else {
            throw .invalidArgument("stream name '\(stream.prefix(64))': 1 to 32 bytes of A-Z a-z 0-9 _ - are allowed")
        }
        self.stream = stream
    }

    /// Every subject of the stream.
    public var streamSubjects: String { "shmbus.\(stream).>" }

    /// The subject of part `part` of a chunk with `key` in `channel`.
    public func subject(channel: String, key: String, part: Int) -> String {
        "shmbus.\(stream).\(Self.keyToken(key)).\(part).\(Self.channelTokens(channel))"
    }

    /// The filter for every part of every chunk of `channel`.
    public func filter(channel: String) -> String {
        "shmbus.\(stream).*.*.\(Self.channelTokens(channel))"
    }

    /// The filter for every channel under `prefix` (which ends in `/`).
    public func filter(prefix: String) -> String {
        "shmbus.\(stream).*.*.\(Self.channelTokens(String(prefix.dropLast()))).>"
    }

    /// A pattern's filter: a name ending in `/` is a prefix.
    public func filter(pattern: String) -> String {
        pattern.hasSuffix("/") ? filter(prefix: pattern) : filter(channel: pattern)
    }

    /// The channel a subject names, nil if it is not one of this stream's chunk subjects.
    public func channel(ofSubject subject: String) -> String? {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 5, tokens[0] == "shmbus", tokens[1] == stream else { return nil }
        var components: [String] = []
        for token in tokens[4...] {
            guard let bytes = Self.decode(token), let component = String(validating: bytes, as: UTF8.self) else { return nil }
            components.append(component)
        }
        let channel = components.joined(separator: "/")
        return ChannelName.problem(with: channel) == nil ? channel : nil
    }

    // MARK: Tokens

    static func isPlain(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }

    /// `A-Z a-z 0-9 - _` as they are, every other byte as `%XX` (uppercase hex).
    public static func encode(_ string: String) -> String {
        var out = ""
        for byte in string.utf8 {
            if isPlain(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xF, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// The bytes a token encodes; nil unless it is exactly what ``encode(_:)`` makes.
    public static func decode(_ token: some StringProtocol) -> [UInt8]? {
        let bytes = Array(token.utf8)
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if isPlain(byte) {
                out.append(byte)
                index += 1
                continue
            }
            guard byte == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            else { return nil }
            let decoded = high << 4 | low
            // A plain byte written as %XX is not what encode makes: refused, so that
            // every key has one token.
            guard !isPlain(decoded) else { return nil }
            out.append(decoded)
            index += 3
        }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// A key's token: `%` for the empty key.
    public static func keyToken(_ key: String) -> String { key.isEmpty ? "%" : encode(key) }

    /// The key a token names, nil if it is not a valid key token.
    public static func key(fromToken token: some StringProtocol) -> String? {
        if token == "%" { return "" }
        guard !token.isEmpty, let bytes = decode(token), let key = String(validating: bytes, as: UTF8.self),
            bytes.count <= SegmentLayout.maximumKeyLength
        else { return nil }
        return key
    }

    static func channelTokens(_ channel: String) -> String {
        channel.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(separator: ".")
    }

    /// The durable consumer's name for an import of `pattern` by bridge `name`:
    /// `<name>-<FNV-1a 64 of the filter subject, 16 hex digits>`.
    public func durableName(bridge name: String, pattern: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in filter(pattern: pattern).utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return "\(name)-" + String(repeating: "0", count: 16 - hex.count) + hex
    }
}
