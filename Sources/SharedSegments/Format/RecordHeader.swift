import CShmBusLinux

/// A validated record header: where a chunk's key and payload are.
struct RecordHeader {
    var offset: UInt64
    var length: UInt64
    var sequence: UInt64
    var timestamp: UInt64
    var expiry: UInt64
    var payloadLength: UInt64
    /// From the record's start.
    var payloadOffset: UInt64
    var keyLength: Int
    /// Bytes of the attributes block at ``attributesOffset``; 0 = none.
    var attributesLength: Int
    var checksum: UInt64
    /// The key's bytes, copied once from the segment (the checksum covers the copy).
    var key: [UInt8]

    var end: UInt64 { offset + length }
    var absolutePayloadOffset: UInt64 { offset + payloadOffset }
    /// Where the attributes block starts, from the record's start.
    var attributesOffset: Int { ChunkAttributes.blockOffset(keyLength: keyLength) }

    /// The record's total length for a key, an attributes block and a payload, or nil
    /// on overflow.
    static func layout(keyLength: Int, attributesLength: Int = 0, payloadLength: UInt64) -> (payloadOffset: UInt64, length: UInt64)? {
        let L = SegmentLayout.self
        let prefix = attributesLength == 0 ? L.recordKeyOffset + keyLength : ChunkAttributes.blockOffset(keyLength: keyLength) + attributesLength
        guard let payloadOffset = L.alignUp(UInt64(prefix), L.alignment) else { return nil }
        let (end, overflow) = payloadOffset.addingReportingOverflow(payloadLength)
        guard !overflow, let length = L.alignUp(end, L.alignment) else { return nil }
        return (payloadOffset, length)
    }

    /// The checksum of a record header (flags and checksum words read as zero) and
    /// its key (docs/FORMAT.md, "Checksums").
    static func checksum(header: UnsafeRawPointer, key: UnsafeRawBufferPointer) -> UInt64 {
        let L = SegmentLayout.self
        var copy = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &copy) { words in
            words.copyMemory(from: UnsafeRawBufferPointer(start: header, count: L.recordChecksumOffset))
            words.storeBytes(of: UInt32(0), toByteOffset: L.recordFlagsOffset, as: UInt32.self)
            let h = shmbus_mix64(words.baseAddress, L.recordChecksumOffset, L.recordChecksumSeed)
            return key.isEmpty ? h : shmbus_mix64(key.baseAddress, key.count, h)
        }
    }

    /// Writes a record header, key and attributes block at `offset` (writer).
    static func write(
        to mapping: MemoryMapping, at offset: Int, length: UInt64, sequence: UInt64, timestamp: UInt64, expiry: UInt64,
        payloadLength: UInt64, payloadOffset: UInt64, key: UnsafeRawBufferPointer,
        attributes: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) {
        let L = SegmentLayout.self
        let base = mapping.base.advanced(by: offset)
        base.storeBytes(of: L.recordMagic, toByteOffset: L.recordMagicOffset, as: UInt32.self)
        base.storeBytes(of: UInt32(0), toByteOffset: L.recordFlagsOffset, as: UInt32.self)
        base.storeBytes(of: length, toByteOffset: L.recordLengthOffset, as: UInt64.self)
        base.storeBytes(of: sequence, toByteOffset: L.recordSequenceOffset, as: UInt64.self)
        base.storeBytes(of: timestamp, toByteOffset: L.recordTimestampOffset, as: UInt64.self)
        base.storeBytes(of: expiry, toByteOffset: L.recordExpiryOffset, as: UInt64.self)
        base.storeBytes(of: payloadLength, toByteOffset: L.recordPayloadLengthOffset, as: UInt64.self)
        base.storeBytes(of: UInt32(payloadOffset), toByteOffset: L.recordPayloadOffsetOffset, as: UInt32.self)
        base.storeBytes(of: UInt16(key.count), toByteOffset: L.recordKeyLengthOffset, as: UInt16.self)
        base.storeBytes(of: UInt16(attributes.count), toByteOffset: L.recordAttributesLengthOffset, as: UInt16.self)
        if !key.isEmpty {
            base.advanced(by: L.recordKeyOffset).copyMemory(from: key.baseAddress!, byteCount: key.count)
        }
        if !attributes.isEmpty {
            // Zero between key and block (the padding rule), then the block itself.
            let blockOffset = ChunkAttributes.blockOffset(keyLength: key.count)
            let keyEnd = L.recordKeyOffset + key.count
            base.advanced(by: keyEnd).initializeMemory(as: UInt8.self, repeating: 0, count: blockOffset - keyEnd)
            base.advanced(by: blockOffset).copyMemory(from: attributes.baseAddress!, byteCount: attributes.count)
        }
        let sum = checksum(header: UnsafeRawPointer(base), key: key)
        base.storeBytes(of: sum, toByteOffset: L.recordChecksumOffset, as: UInt64.self)
    }

    /// Reads and validates the record at `offset`, which must end at or before `limit`
    /// (the committed end the caller loaded). The 64 header bytes and the key are
    /// copied once; only the copies are checked and used.
    ///
    /// The key is a field, not a second result: a `(RecordHeader, [UInt8])` tuple was
    /// destroyed through the runtime's generic tuple witnesses, a tenth of a
    /// small-chunk subscriber's time.
    static func read(from mapping: MemoryMapping, at offset: UInt64, limit: UInt64) throws(SegmentError) -> RecordHeader {
        let L = SegmentLayout.self
        guard offset % UInt64(L.alignment) == 0 else { throw .badRecord(at: offset, "offset is not 64-byte aligned") }
        guard limit <= UInt64(mapping.length), offset < limit, limit - offset >= UInt64(L.recordHeaderSize) else {
            throw .badRecord(at: offset, "a record header does not fit below the committed end \(limit)")
        }
        var raw = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &raw) {
            $0.copyMemory(from: UnsafeRawBufferPointer(start: mapping.base.advanced(by: Int(offset)), count: L.recordHeaderSize))
        }
        // Fields are loaded from the copy in small non-throwing closures, which inline.
        // With the checks below inside one throwing closure around the copy, this
        // function took 19% of a small-chunk subscriber's profile; now 11%.
        func load<T: FixedWidthInteger>(_ o: Int, as type: T.Type) -> T {
            withUnsafeBytes(of: raw) { $0.loadUnaligned(fromByteOffset: o, as: T.self) }
        }
        func u64(_ o: Int) -> UInt64 { load(o, as: UInt64.self) }
        let magic = load(L.recordMagicOffset, as: UInt32.self)
        guard magic == L.recordMagic else {
            throw .badRecord(at: offset, "magic is 0x\(String(magic, radix: 16)), not 0x\(String(L.recordMagic, radix: 16)) (\"CHNK\")")
        }
        let length = u64(L.recordLengthOffset)
        guard length >= UInt64(L.recordHeaderSize), length % UInt64(L.alignment) == 0 else {
            throw .badRecord(at: offset, "length \(length) is not a multiple of 64 of at least 64")
        }
        guard length <= limit - offset else {
            throw .badRecord(at: offset, "length \(length) runs past the committed end \(limit)")
        }
        let keyLength = Int(load(L.recordKeyLengthOffset, as: UInt16.self))
        guard keyLength <= L.maximumKeyLength else {
            throw .badRecord(at: offset, "key length \(keyLength) exceeds \(L.maximumKeyLength)")
        }
        let payloadOffset = UInt64(load(L.recordPayloadOffsetOffset, as: UInt32.self))
        let payloadLength = u64(L.recordPayloadLengthOffset)
        guard payloadOffset % UInt64(L.alignment) == 0, payloadOffset >= UInt64(L.recordKeyOffset + keyLength) else {
            throw .badRecord(at: offset, "payload offset \(payloadOffset) overlaps the header or key, or is not 64-byte aligned")
        }
        let attributesLength = Int(load(L.recordAttributesLengthOffset, as: UInt16.self))
        if attributesLength != 0 {
            let blockEnd = ChunkAttributes.blockOffset(keyLength: keyLength) + attributesLength
            guard attributesLength % 8 == 0, UInt64(blockEnd) <= payloadOffset else {
                throw .badRecord(at: offset, "attributes (\(attributesLength) bytes) are not a multiple of 8 or run into the payload at +\(payloadOffset)")
            }
        }
        guard payloadOffset <= length, payloadLength <= length - payloadOffset else {
            throw .badRecord(at: offset, "payload (\(payloadLength) bytes at +\(payloadOffset)) runs past the record's \(length) bytes")
        }
        // No array for the empty key, the common case of a flood of small chunks.
        let key = keyLength == 0 ? [] : Array(UnsafeRawBufferPointer(start: mapping.base.advanced(by: Int(offset) + L.recordKeyOffset), count: keyLength))
        let stored = u64(L.recordChecksumOffset)
        let computed = withUnsafeBytes(of: raw) { header in key.withUnsafeBytes { checksum(header: header.baseAddress!, key: $0) } }
        guard stored == computed else {
            throw .badRecord(at: offset, "checksum mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16)))")
        }
        let record = RecordHeader(
            offset: offset, length: length, sequence: u64(L.recordSequenceOffset), timestamp: u64(L.recordTimestampOffset),
            expiry: u64(L.recordExpiryOffset), payloadLength: payloadLength, payloadOffset: payloadOffset,
            keyLength: keyLength, attributesLength: attributesLength, checksum: stored, key: key)
        return record
    }

    /// The record's flags word (atomic acquire load; the only mutable word of a record).
    static func flags(in mapping: MemoryMapping, at offset: UInt64) -> UInt32 {
        mapping.loadAcquire32(Int(offset) + SegmentLayout.recordFlagsOffset)
    }
}
