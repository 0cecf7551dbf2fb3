/// docs/FORMAT.md's checks of the values: the well-known names' types and ranges, the
/// parts of an array or image, and their fit in the payload.
extension ChunkAttributes {
    /// Checks these attributes as a reader checks a record's (docs/FORMAT.md,
    /// "Checks"), for a payload of `payloadLength` bytes: what a receiver of
    /// attributes from elsewhere (the bus, a file) runs before it trusts them.
    public func validate(payloadLength: UInt64) throws(SegmentError) {
        if let problem = problem(payloadLength: payloadLength) { throw SegmentError(.invalidArgument, "attributes: \(problem)") }
    }

    /// What is wrong with these attributes for a payload of `payloadLength` bytes, or
    /// nil when nothing is.
    func problem(payloadLength: UInt64) -> String? {
        for (name, value) in entries {
            guard Self.validName(Array(name.utf8)) != nil else {
                return "'\(name)' is not a valid name (a lowercase letter, then a-z, 0-9, '-', '_' or '.'; at most 63 bytes)"
            }
            switch value {
            case .string(let s) where s.utf8.count > Self.maximumStringLength || s.utf8.contains(0):
                return "'\(name)' is longer than \(Self.maximumStringLength) bytes or holds a NUL"
            case .integers(let list) where list.count > Self.maximumIntegers:
                return "'\(name)' has \(list.count) integers; the limit is \(Self.maximumIntegers)"
            default: break
            }
            if let problem = Self.wellKnownProblem(name, value) { return problem }
        }
        return partsProblem() ?? fitProblem(payloadLength: payloadLength)
    }

    /// The type and range of a well-known name's value.
    private static func wellKnownProblem(_ name: String, _ value: Value) -> String? {
        switch (name, value) {
        case ("content-type", .string(let s)):
            let printable = s.utf8.allSatisfy { (0x20...0x7E).contains($0) }
            return printable && (1...255).contains(s.utf8.count) ? nil : "content-type must be 1-255 printable ASCII bytes"
        case ("dtype", .string(let s)):
            return s.isEmpty ? "dtype is empty" : nil
        case ("shape", .integers(let list)):
            if list.count > maximumDimensions { return "shape has \(list.count) dimensions; the limit is \(maximumDimensions)" }
            return list.allSatisfy { $0 >= 0 } ? nil : "shape has a negative dimension"
        case ("strides", .integers(let list)):
            return list.allSatisfy { $0 >= 0 } ? nil : "strides has a negative stride"
        case ("width", .integer(let v)), ("height", .integer(let v)), ("stride", .integer(let v)):
            return v >= 1 ? nil : "\(name) is \(v), not at least 1"
        case ("pixel-format", .string(let s)):
            return s.utf8.count == 4 && s.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) ? nil : "pixel-format '\(s)' is not 4 ASCII characters"
        case ("content-type", _), ("dtype", _), ("pixel-format", _):
            return "\(name) must be a string"
        case ("shape", _), ("strides", _):
            return "\(name) must be an array of integers"
        case ("width", _), ("height", _), ("stride", _):
            return "\(name) must be an integer"
        default:
            return nil
        }
    }

    /// An array or an image with a part missing.
    private func partsProblem() -> String? {
        let arrayParts = ["dtype", "shape"].filter { self[$0] != nil }
        if arrayParts.count == 1 { return "an array needs both dtype and shape (only \(arrayParts[0]) is set)" }
        if self["strides"] != nil, arrayParts.isEmpty { return "strides without dtype and shape" }
        if case .integers(let strides)? = self["strides"], case .integers(let shape)? = self["shape"], strides.count != shape.count {
            return "strides has \(strides.count) elements and shape \(shape.count)"
        }
        let imageParts = ["width", "height", "pixel-format"].filter { self[$0] != nil }
        if !imageParts.isEmpty, imageParts.count < 3 {
            return "an image needs width, height and pixel-format (only \(imageParts.joined(separator: ", ")) set)"
        }
        if self["stride"] != nil, imageParts.isEmpty { return "stride without width, height and pixel-format" }
        return nil
    }

    /// An array of a known element type or an image of a known format that does not
    /// fit the payload.
    private func fitProblem(payloadLength: UInt64) -> String? {
        if let array, array.elementType.size != nil {
            guard let extent = array.extent else { return "the array's extent overflows" }
            if UInt64(extent) > payloadLength {
                return "the array (\(array.elementType) \(array.shape)) spans \(extent) bytes; the payload has \(payloadLength)"
            }
        }
        if let image, let bpp = image.pixelFormat.bytesPerPixel {
            guard let extent = image.extent, let stride = image.effectiveStride else { return "the image's extent overflows" }
            if stride < image.width * bpp { return "stride \(stride) is less than width \(image.width) × \(bpp) bytes" }
            if UInt64(extent) > payloadLength {
                return "the \(image.width)×\(image.height) \(image.pixelFormat) image spans \(extent) bytes; the payload has \(payloadLength)"
            }
        }
        return nil
    }
}
