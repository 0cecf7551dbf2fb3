import Foundation
import SharedSegments
import TestSupport
import Testing

/// docs/FORMAT.md's tables against the constants the code uses.
@Suite struct FormatDocumentTests {
    static let constants: [String: Int] = [
        "magicOffset": SegmentLayout.magicOffset, "versionOffset": SegmentLayout.versionOffset,
        "headerSizeOffset": SegmentLayout.headerSizeOffset, "capacityOffset": SegmentLayout.capacityOffset,
        "segmentIDOffset": SegmentLayout.segmentIDOffset, "generationOffset": SegmentLayout.generationOffset,
        "baseSequenceOffset": SegmentLayout.baseSequenceOffset, "createdOffset": SegmentLayout.createdOffset,
        "writerPIDOffset": SegmentLayout.writerPIDOffset, "channelLengthOffset": SegmentLayout.channelLengthOffset,
        "channelOffset": SegmentLayout.channelOffset, "headerChecksumOffset": SegmentLayout.headerChecksumOffset,
        "committedEndOffset": SegmentLayout.committedEndOffset, "lastSequenceOffset": SegmentLayout.lastSequenceOffset,
        "recordCountOffset": SegmentLayout.recordCountOffset, "liveBytesOffset": SegmentLayout.liveBytesOffset,
        "deadBytesOffset": SegmentLayout.deadBytesOffset, "liveChunksOffset": SegmentLayout.liveChunksOffset,
        "stateOffset": SegmentLayout.stateOffset, "successorIDOffset": SegmentLayout.successorIDOffset,
        "recordMagicOffset": SegmentLayout.recordMagicOffset, "recordFlagsOffset": SegmentLayout.recordFlagsOffset,
        "recordLengthOffset": SegmentLayout.recordLengthOffset, "recordSequenceOffset": SegmentLayout.recordSequenceOffset,
        "recordTimestampOffset": SegmentLayout.recordTimestampOffset, "recordExpiryOffset": SegmentLayout.recordExpiryOffset,
        "recordPayloadLengthOffset": SegmentLayout.recordPayloadLengthOffset,
        "recordPayloadOffsetOffset": SegmentLayout.recordPayloadOffsetOffset,
        "recordKeyLengthOffset": SegmentLayout.recordKeyLengthOffset,
        "recordAttributesLengthOffset": SegmentLayout.recordAttributesLengthOffset, "recordChecksumOffset": SegmentLayout.recordChecksumOffset,
        "recordKeyOffset": SegmentLayout.recordKeyOffset, "doorbellMagicOffset": SegmentLayout.doorbellMagicOffset,
        "doorbellWordOffset": SegmentLayout.doorbellWordOffset, "doorbellSleepingOffset": SegmentLayout.doorbellSleepingOffset,
        "doorbellAwaitingSignalOffset": SegmentLayout.doorbellAwaitingSignalOffset,
        "leaseMagicOffset": SegmentLayout.leaseMagicOffset, "leaseLowOffset": SegmentLayout.leaseLowOffset,
        "leaseHighOffset": SegmentLayout.leaseHighOffset, "leaseSlotsOffset": SegmentLayout.leaseSlotsOffset,
    ]

    /// Rows `| field | constant | offset | size | …` of every table in the document.
    static func documentedOffsets() throws -> [String: (offset: Int, size: String)] {
        let text = try String(contentsOf: BuiltProducts.repositoryRoot.appendingPathComponent("docs/FORMAT.md"), encoding: .utf8)
        var rows: [String: (Int, String)] = [:]
        // Tables inside list items are indented.
        for line in text.split(separator: "\n").map({ $0.drop { $0 == " " } }) where line.hasPrefix("|") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            // Field tables only: their constant column names an offset.
            guard cells.count > 5, let offset = Int(cells[3]), cells[2].hasSuffix("Offset") else { continue }
            rows[cells[2]] = (offset, cells[4])
        }
        return rows
    }

    @Test func everyConstantIsDocumentedAtItsOffset() throws {
        let documented = try Self.documentedOffsets()
        for (name, value) in Self.constants {
            let row = try #require(documented[name], "docs/FORMAT.md has no row for \(name)")
            #expect(row.offset == value, "\(name): FORMAT.md says \(row.offset), the code uses \(value)")
        }
        #expect(Set(documented.keys) == Set(Self.constants.keys), "rows without a constant: \(Set(documented.keys).subtracting(Self.constants.keys))")
    }

    @Test func documentedFieldsDoNotOverlap() throws {
        let documented = try Self.documentedOffsets()
        let header = documented.filter { !$0.key.hasPrefix("record") && !$0.key.hasPrefix("doorbell") && !$0.key.hasPrefix("lease") }
        let spans = header.compactMap { entry -> (Int, Int)? in Int(entry.value.size).map { (entry.value.offset, entry.value.offset + $0) } }
            .sorted { $0.0 < $1.0 }
        for (a, b) in zip(spans, spans.dropFirst()) { #expect(a.1 <= b.0, "header fields overlap at \(a) and \(b)") }
        #expect(spans.last!.1 <= SegmentLayout.headerSize)
    }

    @Test func magicsSpellTheirNames() {
        func ascii<T: FixedWidthInteger>(_ value: T) -> String {
            withUnsafeBytes(of: value.littleEndian) { String(decoding: $0, as: UTF8.self) }
        }
        #expect(ascii(SegmentLayout.magic) == "SHMBUSG1")
        #expect(ascii(SegmentLayout.recordMagic) == "CHNK")
        #expect(ascii(SegmentLayout.doorbellMagic) == "SHMBDOOR")
        #expect(ascii(SegmentLayout.leaseMagic) == "SHMBLEAS")
    }
}
