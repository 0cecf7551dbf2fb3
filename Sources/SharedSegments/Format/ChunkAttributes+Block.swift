import CShmBusLinux

/// The attributes block's encoding and its checks (docs/FORMAT.md, "The block" and
/// "Checks"). Writers and readers run the same checks, so nothing a writer here
/// produces is refused by a reader here.
extension ChunkAttributes {
    static let checksumSeed: UInt64 = 0x5348_4D42_5553_4154  // "SHMBUSAT"
    static let maximumBlockLength = 0xFFF8  // the largest multiple of 8 a u16 holds
    static let maximumNameLength = 63
    static let maximumStringLength = 4096
    static let maximumIntegers = 64
    static let maximumDimensions = 32

    /// FORMAT.md's "Well-known attributes".
    public static let wellKnownNames: Set<String> = ["content-type", "dtype", "shape", "strides", "width", "height", "stride", "pixel-format"]

    enum EntryType: UInt8 {
        case string = 1, integer = 2, integers = 3, double = 4
    }

    /// Where the block starts in a record with a key of `keyLength` bytes.
    static func blockOffset(keyLength: Int) -> Int { (SegmentLayout.recordKeyOffset + keyLength + 7) & ~7 }

    /// The block for these attributes, checked as a reader will check it (with the
    /// payload's length, for the fit of an array or image): empty for no attributes.
    public func encodedBlock(payloadLength: UInt64) throws(SegmentError) -> [UInt8] {
        guard !entries.isEmpty else { return [] }
        if let problem = problem(payloadLength: payloadLength) { throw SegmentError(.invalidArgument, "attributes: \(problem)") }
        var block = [UInt8](repeating: 0, count: 8)
        for (name, value) in entries {
            let bytes: [UInt8]
            let type: EntryType
            switch value {
            case .string(let s): (type, bytes) = (.string, Array(s.utf8))
            case .integer(let i): (type, bytes) = (.integer, Self.littleEndian([i]))
            case .integers(let list): (type, bytes) = (.integers, Self.littleEndian(list))
            case .double(let d): (type, bytes) = (.double, Self.littleEndian([Int64(bitPattern: d.bitPattern)]))
            }
            block.append(UInt8(name.utf8.count))
            block.append(type.rawValue)
            block.append(UInt8(bytes.count & 0xFF))
            block.append(UInt8(bytes.count >> 8))
            block.append(contentsOf: name.utf8)
            block.append(contentsOf: bytes)
            block.append(contentsOf: repeatElement(0, count: (8 - block.count % 8) % 8))
        }
        guard block.count <= Self.maximumBlockLength else {
            throw SegmentError(.invalidArgument, "attributes take \(block.count) bytes; the limit is \(Self.maximumBlockLength)")
        }
        let sum = block.withUnsafeBytes { shmbus_mix64($0.baseAddress! + 8, $0.count - 8, Self.checksumSeed) }
        withUnsafeBytes(of: sum.littleEndian) { block.replaceSubrange(0..<8, with: $0) }
        return block
    }

    /// The attributes of a block in FORMAT.md's layout that came from elsewhere (another
    /// host, through the JetStream bridge), checked as a reader checks a record's, with
    /// the length of the payload they describe.
    public init(block: UnsafeRawBufferPointer, payloadLength: UInt64) throws(SegmentError) {
        switch Self.decode(block: block, payloadLength: payloadLength) {
        case .success(let attributes): self = attributes
        case .failure(let problem): throw SegmentError(.invalidArgument, "attributes block: \(problem.message)")
        }
    }

    /// Decodes and checks a block copied out of a record; the message of a failure
    /// says what is wrong, for the caller to place.
    static func decode(block: UnsafeRawBufferPointer, payloadLength: UInt64) -> Result<ChunkAttributes, BlockProblem> {
        guard block.count >= 8, block.count % 8 == 0 else {
            return .failure(BlockProblem("length \(block.count) is not a multiple of 8 of at least 8"))
        }
        let stored = block.loadUnaligned(as: UInt64.self).littleEndian
        let computed = shmbus_mix64(block.baseAddress! + 8, block.count - 8, checksumSeed)
        guard stored == computed else {
            return .failure(BlockProblem("checksum mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16)))"))
        }
        var attributes = ChunkAttributes()
        var seen = Set<String>()  // skipped entries' names too: a name appears once
        var at = 8
        while at < block.count {
            guard block.count - at >= 4 else { return .failure(BlockProblem("entry at +\(at) is cut off")) }
            let nameLength = Int(block[at])
            let rawType = block[at + 1]
            let valueLength = Int(block.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self).littleEndian)
            let end = (at + 4 + nameLength + valueLength + 7) & ~7
            guard end <= block.count else { return .failure(BlockProblem("entry at +\(at) runs past the block")) }
            let nameBytes = UnsafeRawBufferPointer(rebasing: block[(at + 4)..<(at + 4 + nameLength)])
            guard let name = validName(nameBytes) else { return .failure(BlockProblem("entry at +\(at): invalid name")) }
            guard seen.insert(name).inserted else { return .failure(BlockProblem("'\(name)' appears twice")) }
            let value = UnsafeRawBufferPointer(rebasing: block[(at + 4 + nameLength)..<(at + 4 + nameLength + valueLength)])
            at = end
            // An entry of a type this reader does not know is skipped (FORMAT.md), but a
            // well-known name has the type its row says.
            guard let type = EntryType(rawValue: rawType) else {
                if wellKnownNames.contains(name) { return .failure(BlockProblem("'\(name)' has type \(rawType), not its row's")) }
                continue
            }
            switch decodeValue(type, value) {
            case .success(let decoded): attributes.entries.append((name, decoded))
            case .failure(let problem): return .failure(BlockProblem("'\(name)': \(problem.message)"))
            }
        }
        if let problem = attributes.problem(payloadLength: payloadLength) { return .failure(BlockProblem(problem)) }
        return .success(attributes)
    }

    struct BlockProblem: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    private static func decodeValue(_ type: EntryType, _ value: UnsafeRawBufferPointer) -> Result<Value, BlockProblem> {
        switch type {
        case .string:
            guard value.count <= maximumStringLength, !value.contains(0), let s = String(validating: value, as: UTF8.self) else {
                return .failure(BlockProblem("not a string of at most \(maximumStringLength) UTF-8 bytes without NUL"))
            }
            return .success(.string(s))
        case .integer, .double:
            guard value.count == 8 else { return .failure(BlockProblem("\(value.count) bytes, not 8")) }
            let bits = value.loadUnaligned(as: UInt64.self).littleEndian
            return .success(type == .integer ? .integer(Int64(bitPattern: bits)) : .double(Double(bitPattern: bits)))
        case .integers:
            guard value.count % 8 == 0, value.count / 8 <= maximumIntegers else {
                return .failure(BlockProblem("\(value.count) bytes, not a multiple of 8 up to \(maximumIntegers * 8)"))
            }
            return .success(.integers((0..<(value.count / 8)).map { Int64(littleEndian: value.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }))
        }
    }

    /// A lowercase letter, then lowercase letters, digits, `-`, `_` or `.`; 1–63 bytes.
    static func validName(_ bytes: some Collection<UInt8>) -> String? {
        guard (1...maximumNameLength).contains(bytes.count), let first = bytes.first, (0x61...0x7A).contains(first) else { return nil }
        let allowed = bytes.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }
        return allowed ? String(decoding: bytes, as: UTF8.self) : nil
    }

    private static func littleEndian(_ values: [Int64]) -> [UInt8] {
        values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    }
}
