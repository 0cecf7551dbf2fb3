import CShmBusLinux

/// The immutable part of a segment header, as validated facts.
public struct SegmentHeader: Sendable, Hashable {
    public var id: SegmentID
    public var channel: String
    public var generation: UInt64
    /// The last sequence assigned before this segment accepted appends.
    public var baseSequence: UInt64
    /// The segment's size in bytes, header included.
    public var capacity: UInt64
    /// CLOCK_REALTIME nanoseconds.
    public var created: UInt64
    public var writerPID: UInt32
    /// ``SegmentLayout/version``, or ``SegmentLayout/reusableVersion`` for a segment
    /// whose memory may carry a later generation once no lease holds this one.
    public var version: UInt32 = SegmentLayout.version

    /// Whether readers must hold a lease on this generation before reading records.
    public var isReusable: Bool { version == SegmentLayout.reusableVersion }

    /// The segment's name: its ID in hex.
    public var name: String { id.name }

    /// Writes the header into a new segment's mapping (before sealing).
    func write(to mapping: MemoryMapping) {
        let L = SegmentLayout.self
        mapping.store(L.magic, at: L.magicOffset)
        mapping.store(version, at: L.versionOffset)
        mapping.store(UInt32(L.headerSize), at: L.headerSizeOffset)
        mapping.store(capacity, at: L.capacityOffset)
        mapping.store(bytes: id.bytes, at: L.segmentIDOffset)
        mapping.store(generation, at: L.generationOffset)
        mapping.store(baseSequence, at: L.baseSequenceOffset)
        mapping.store(created, at: L.createdOffset)
        mapping.store(writerPID, at: L.writerPIDOffset)
        let name = Array(channel.utf8)
        mapping.store(UInt16(name.count), at: L.channelLengthOffset)
        mapping.store(bytes: name, at: L.channelOffset)
        let checksum = shmbus_mix64(mapping.base, L.headerChecksumOffset, L.headerChecksumSeed)
        mapping.store(checksum, at: L.headerChecksumOffset)
        mapping.store(UInt64(L.headerSize), at: L.committedEndOffset)
        mapping.store(baseSequence, at: L.lastSequenceOffset)
    }

    /// Reads and validates the header of a mapped segment of `fileSize` bytes. The
    /// immutable part is copied once and only the copy is checked and used.
    static func read(from mapping: MemoryMapping, fileSize: Int) throws(SegmentError) -> SegmentHeader {
        let L = SegmentLayout.self
        guard fileSize >= L.headerSize, mapping.length >= L.headerSize else {
            throw SegmentError(.tooSmall, "the file is \(fileSize) bytes; a segment header alone takes \(L.headerSize)")
        }
        let raw = mapping.bytes(0, L.headerChecksumOffset + 8)
        func u64(_ o: Int) -> UInt64 { raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self) } }
        func u32(_ o: Int) -> UInt32 { raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) } }
        func u16(_ o: Int) -> UInt16 { raw.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt16.self) } }

        guard u64(L.magicOffset) == L.magic else {
            throw .badHeader("magic is 0x\(String(u64(L.magicOffset), radix: 16)), not 0x\(String(L.magic, radix: 16)) (\"SHMBUSG1\")")
        }
        let version = u32(L.versionOffset)
        guard version == L.version || version == L.reusableVersion else {
            throw .badHeader("format version \(version) is not supported (this reader knows \(L.version) and \(L.reusableVersion))")
        }
        guard u32(L.headerSizeOffset) == UInt32(L.headerSize) else {
            throw .badHeader("header size \(u32(L.headerSizeOffset)) is not \(L.headerSize)")
        }
        let checksum = raw.withUnsafeBytes { shmbus_mix64($0.baseAddress, L.headerChecksumOffset, L.headerChecksumSeed) }
        guard checksum == u64(L.headerChecksumOffset) else {
            throw .badHeader("checksum mismatch (stored 0x\(String(u64(L.headerChecksumOffset), radix: 16)), computed 0x\(String(checksum, radix: 16)))")
        }
        let capacity = u64(L.capacityOffset)
        guard capacity % UInt64(L.pageSize) == 0, capacity >= UInt64(L.headerSize + L.pageSize) else {
            throw .badHeader("capacity \(capacity) is not a multiple of \(L.pageSize) of at least \(L.headerSize + L.pageSize)")
        }
        guard capacity <= UInt64(fileSize), capacity <= UInt64(mapping.length) else {
            throw SegmentError(.tooSmall, "the header declares \(capacity) bytes but the file has \(fileSize)")
        }
        let channelLength = Int(u16(L.channelLengthOffset))
        guard channelLength >= 1, channelLength <= L.maximumChannelLength else {
            throw .badHeader("channel name length \(channelLength) is not in 1...\(L.maximumChannelLength)")
        }
        guard let channel = String(validating: raw[L.channelOffset..<(L.channelOffset + channelLength)], as: UTF8.self) else {
            throw .badHeader("channel name is not UTF-8")
        }
        if let problem = ChannelName.problem(with: channel) {
            throw .badHeader("channel name '\(channel)': \(problem)")
        }
        let id = SegmentID(unchecked: Array(raw[L.segmentIDOffset..<(L.segmentIDOffset + 16)]))
        guard !id.isZero else { throw .badHeader("segment ID is zero") }
        return SegmentHeader(
            id: id, channel: channel, generation: u64(L.generationOffset), baseSequence: u64(L.baseSequenceOffset),
            capacity: capacity, created: u64(L.createdOffset), writerPID: u32(L.writerPIDOffset), version: version)
    }
}

/// The mutable part of a segment header at one instant.
public struct SegmentLiveState: Sendable, Hashable {
    /// Records lie in `[headerSize, committedEnd)`.
    public var committedEnd: UInt64
    public var lastSequence: UInt64
    public var recordCount: UInt64
    public var liveBytes: UInt64
    public var deadBytes: UInt64
    public var liveChunks: UInt64
    public var isRetired: Bool
    /// The writer asked for the memory back (version 2; see
    /// ``SegmentLayout/reclaimedFlag``).
    public var isReclaimed: Bool = false
    /// Set once retired.
    public var successor: SegmentID?

    /// Bytes of records committed (the header excluded).
    public var committedBytes: UInt64 { committedEnd - UInt64(SegmentLayout.headerSize) }
}
