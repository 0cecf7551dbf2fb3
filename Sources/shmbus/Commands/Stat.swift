import ArgumentParser
import DBus
import Foundation
import ShmBus

struct Stat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show everything the registry knows about one segment.")

    @Argument(help: "The segment's name (32 hex digits, as `shmbus ls` shows).")
    var segment: String

    @OptionGroup var bus: BusOption

    @Flag(help: "One JSON object.")
    var json = false

    func run() async throws {
        try await reportingFailures {
            let registry = try await RegistryClient.connect(to: bus.resolved())
            let properties = try await registry.segmentProperties(segment).values
            // The segment's own contents only where the caller may read it: the
            // registry's facts are shown either way.
            let chunks = try? await Self.newestChunks(of: segment, registry: registry)
            if json {
                var object: [String: JSONValue] = [:]
                for (key, value) in properties { object[key] = JSONValue(value) }
                try JSONOutput.print(StatJSON(properties: object, chunks: chunks?.0.map(Self.keyedChunk), truncated: chunks?.truncated))
                return
            }
            var table = TextTable("PROPERTY", "VALUE")
            for (key, value) in properties { table.add(key, Self.describe(key, value)) }
            if let (list, truncated) = chunks {
                for chunk in list { table.add("Key \(chunk.key.isEmpty ? "-" : "'\(chunk.key)'")", Self.describe(chunk)) }
                if truncated { table.add("Keys", "more than shown (the first \(Self.scannedRecords) records, \(Self.listedKeys) keys)") }
            }
            try Output.write(table.rendered.split(separator: "\n").dropFirst().joined(separator: "\n"))
        }
    }

    static func describe(_ key: String, _ value: DBusValue) -> String {
        switch (key, value) {
        case ("Capacity", .uint64(let n)), ("CommittedBytes", .uint64(let n)): return "\(ByteCount.human(n)) (\(n) bytes)"
        case ("Created", .uint64(let us)), ("Expires", .uint64(let us)):
            guard us > 0 else { return "never" }
            return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(us) / 1e6))
        case (_, .string(let s)): return s.isEmpty ? "-" : s
        case (_, .boolean(let b)): return b ? "yes" : "no"
        case (_, .uint64(let n)): return "\(n)"
        default: return "\(value)"
        }
    }
}

/// `shmbus stat --json`: the segment's properties at the top level, as before, and
/// `Chunks`, the newest live chunk of each key, when the caller may read the segment.
struct StatJSON: Encodable {
    var properties: [String: JSONValue]
    var chunks: [Stat.KeyedChunk]?
    var truncated: Bool?

    private struct Name: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Name.self)
        for (key, value) in properties { try container.encode(value, forKey: Name(stringValue: key)) }
        try container.encodeIfPresent(chunks, forKey: Name(stringValue: "Chunks"))
        if truncated == true { try container.encode(true, forKey: Name(stringValue: "ChunksTruncated")) }
    }
}

/// D-Bus values as JSON.
enum JSONValue: Encodable {
    case string(String), number(Double), integer(Int64), unsigned(UInt64), bool(Bool), array([JSONValue]), object([String: JSONValue])

    init(_ value: DBusValue) {
        switch value {
        case .byte(let v): self = .unsigned(UInt64(v))
        case .boolean(let v): self = .bool(v)
        case .int16(let v): self = .integer(Int64(v))
        case .uint16(let v): self = .unsigned(UInt64(v))
        case .int32(let v): self = .integer(Int64(v))
        case .uint32(let v): self = .unsigned(UInt64(v))
        case .int64(let v): self = .integer(v)
        case .uint64(let v): self = .unsigned(v)
        case .double(let v): self = .number(v)
        case .string(let v): self = .string(v)
        case .objectPath(let v): self = .string(v.rawValue)
        case .signature(let v): self = .string(v.rawValue)
        case .unixFD(let v): self = .integer(Int64(v.rawValue))
        case .variant(let v): self = JSONValue(v)
        case .bytes(let v): self = .array(v.map { .unsigned(UInt64($0)) })
        case .array(_, let v): self = .array(v.map(JSONValue.init))
        case .dictionary(_, _, let entries):
            var object: [String: JSONValue] = [:]
            for entry in entries {
                let key: String
                if case .string(let s) = entry.key { key = s } else { key = entry.key.description }
                object[key] = JSONValue(entry.value)
            }
            self = .object(object)
        case .structure(let v): self = .array(v.map(JSONValue.init))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let v): try container.encode(v)
        case .number(let v): try container.encode(v)
        case .integer(let v): try container.encode(v)
        case .unsigned(let v): try container.encode(v)
        case .bool(let v): try container.encode(v)
        case .array(let v): try container.encode(v)
        case .object(let v): try container.encode(v)
        }
    }
}
