import Foundation
import NATS
import SharedSegments

/// One message of docs/BRIDGE.md's layout: what its headers say about the part and its
/// chunk. Built by the exporter, parsed (and checked, as untrusted input) by the importer.
public struct ChunkPart: Sendable, Hashable {
    public var channel: String
    public var key: String
    public var sequence: UInt64
    public var timestamp: UInt64
    public var expiry: UInt64
    /// 1 … `parts`.
    public var part: Int
    public var parts: Int
    /// Where this part's data go in the payload, and the payload's whole length.
    public var offset: UInt64
    public var length: UInt64
    /// FORMAT.md's attributes block (part 1 only; nil: no attributes).
    public var attributesBlock: [UInt8]?
    /// SHA-256 of the whole payload (the last part only).
    public var digest: [UInt8]?

    /// `Nats-Msg-Id`: the same for the same part of the same chunk, whoever sends it again.
    public var messageID: String {
        "shmbus:\(channel):\(sequence):\(timestamp):\(part)"
    }

    /// The headers of docs/BRIDGE.md, "Headers".
    public var headers: [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = [
            ("Shmbus-Channel", channel), ("Shmbus-Key", SubjectLayout.keyToken(key)), ("Shmbus-Sequence", String(sequence)),
            ("Shmbus-Timestamp", String(timestamp)), ("Shmbus-Expiry", String(expiry)), ("Shmbus-Part", String(part)),
            ("Shmbus-Parts", String(parts)), ("Shmbus-Offset", String(offset)), ("Shmbus-Length", String(length)),
        ]
        if let attributesBlock { headers.append(("Shmbus-Attributes", Data(attributesBlock).base64EncodedString())) }
        if let digest { headers.append(("Shmbus-Digest", "sha-256=" + digest.map { String(format: "%02x", $0) }.joined())) }
        return headers
    }

    public init(
        channel: String, key: String, sequence: UInt64, timestamp: UInt64, expiry: UInt64, part: Int, parts: Int, offset: UInt64,
        length: UInt64, attributesBlock: [UInt8]? = nil, digest: [UInt8]? = nil
    ) {
        self.channel = channel
        self.key = key
        self.sequence = sequence
        self.timestamp = timestamp
        self.expiry = expiry
        self.part = part
        self.parts = parts
        self.offset = offset
        self.length = length
        self.attributesBlock = attributesBlock
        self.digest = digest
    }

    /// Reads and checks a message's headers against its subject and its data's size.
    public init(message: NATSMessage, layout: SubjectLayout) throws(BridgeError) {
        let subject = message.subject
        func bad(_ reason: String) -> BridgeError { .badMessage(subject: subject, reason: reason) }
        func number(_ name: String) throws(BridgeError) -> UInt64 {
            guard let text = message.header(name) else { throw bad("no \(name) header") }
            guard let value = Self.strictDecimal(text) else { throw bad("\(name) '\(text.prefix(40))' is not a decimal number") }
            return value
        }
        guard let channel = layout.channel(ofSubject: subject) else { throw bad("not a chunk subject of stream '\(layout.stream)'") }
        guard message.header("Shmbus-Channel") == channel else { throw bad("Shmbus-Channel does not name the subject's channel") }
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        guard let keyToken = message.header("Shmbus-Key"), keyToken == tokens[2] else { throw bad("Shmbus-Key is not the subject's key") }
        guard let key = SubjectLayout.key(fromToken: keyToken) else { throw bad("Shmbus-Key '\(keyToken.prefix(40))' is not a key token") }
        let part = try number("Shmbus-Part")
        let parts = try number("Shmbus-Parts")
        guard parts >= 1, parts <= UInt64(Int32.max), (1...parts).contains(part) else { throw bad("part \(part) of \(parts)") }
        guard String(part) == tokens[3] else { throw bad("Shmbus-Part is not the subject's part") }
        let offset = try number("Shmbus-Offset")
        let length = try number("Shmbus-Length")
        let count = UInt64(message.data.count)
        guard offset <= length, count <= length - offset else { throw bad("\(count) bytes at \(offset) pass the length \(length)") }
        if part == parts, offset + count != length { throw bad("the last part ends at \(offset + count), not at the length \(length)") }
        if part == 1, offset != 0 { throw bad("part 1 starts at \(offset)") }
        var attributes: [UInt8]?
        if let text = message.header("Shmbus-Attributes") {
            guard part == 1, let data = Data(base64Encoded: text) else { throw bad("Shmbus-Attributes is not base64 on part 1") }
            attributes = Array(data)
        }
        var digest: [UInt8]?
        if let text = message.header("Shmbus-Digest") {
            guard part == parts, let value = Self.sha256(text) else { throw bad("Shmbus-Digest '\(text.prefix(80))' is not sha-256=<64 hex>") }
            digest = value
        } else if part == parts {
            throw bad("the last part has no Shmbus-Digest")
        }
        self.init(
            channel: channel, key: key, sequence: try number("Shmbus-Sequence"), timestamp: try number("Shmbus-Timestamp"),
            expiry: try number("Shmbus-Expiry"), part: Int(part), parts: Int(parts), offset: offset, length: length,
            attributesBlock: attributes, digest: digest)
    }

    /// Decimal digits only, no sign, no leading zero (but "0"), within UInt64.
    static func strictDecimal(_ text: String) -> UInt64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), text == "0" || !text.hasPrefix("0") else { return nil }
        return UInt64(text)
    }

    static func sha256(_ text: String) -> [UInt8]? {
        guard text.hasPrefix("sha-256=") else { return nil }
        let hex = Array(text.utf8.dropFirst(8))
        guard hex.count == 64 else { return nil }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: 64, by: 2) {
            guard let byte = UInt8(String(decoding: hex[index..<index + 2], as: UTF8.self), radix: 16),
                hex[index..<index + 2].allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
            else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}
