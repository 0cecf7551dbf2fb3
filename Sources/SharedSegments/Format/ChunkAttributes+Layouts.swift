extension ChunkAttributes {
    /// An array's element type (`dtype`), little-endian. Names other than
    /// docs/FORMAT.md's are kept as they are, with no known size.
    public struct ElementType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let bool = Self(rawValue: "bool")
        public static let int8 = Self(rawValue: "int8")
        public static let uint8 = Self(rawValue: "uint8")
        public static let int16 = Self(rawValue: "int16")
        public static let uint16 = Self(rawValue: "uint16")
        public static let int32 = Self(rawValue: "int32")
        public static let uint32 = Self(rawValue: "uint32")
        public static let int64 = Self(rawValue: "int64")
        public static let uint64 = Self(rawValue: "uint64")
        public static let float16 = Self(rawValue: "float16")
        public static let bfloat16 = Self(rawValue: "bfloat16")
        public static let float32 = Self(rawValue: "float32")
        public static let float64 = Self(rawValue: "float64")
        public static let complex64 = Self(rawValue: "complex64")
        public static let complex128 = Self(rawValue: "complex128")

        static let sizes: [String: Int] = [
            "bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8,
            "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16,
        ]

        /// Bytes per element; nil for a name this reader does not know.
        public var size: Int? { Self.sizes[rawValue] }
        public var description: String { rawValue }
    }

    /// An array: element type, dimensions (outermost first) and strides in bytes.
    public struct ArrayLayout: Sendable, Hashable {
        public var elementType: ElementType
        public var shape: [Int]
        /// Bytes between elements along each dimension; nil: row-major and contiguous.
        public var strides: [Int]?

        public init(elementType: ElementType, shape: [Int], strides: [Int]? = nil) {
            self.elementType = elementType
            self.shape = shape
            self.strides = strides
        }

        /// The strides, computed for row-major order when none are stored; nil when
        /// the element size is unknown or they overflow.
        public var effectiveStrides: [Int]? {
            if let strides { return strides }
            guard var step = elementType.size else { return nil }
            var out = [Int](repeating: 0, count: shape.count)
            for i in shape.indices.reversed() {
                out[i] = step
                let (next, overflow) = step.multipliedReportingOverflow(by: max(shape[i], 1))
                guard !overflow else { return nil }
                step = next
            }
            return out
        }

        /// Bytes from the first element to the end of the last: 0 if a dimension is 0;
        /// nil when the element size is unknown or the sum overflows.
        public var extent: Int? {
            guard let size = elementType.size, let strides = effectiveStrides, strides.count == shape.count else { return nil }
            if shape.contains(0) { return 0 }
            var end = size
            for (dimension, stride) in zip(shape, strides) {
                let (span, o1) = (dimension - 1).multipliedReportingOverflow(by: stride)
                let (sum, o2) = end.addingReportingOverflow(span)
                guard !o1, !o2 else { return nil }
                end = sum
            }
            return end
        }

        /// Elements in the array.
        public var count: Int { shape.reduce(1, *) }
    }

    /// An image: size in pixels, bytes per row and a DRM pixel format.
    public struct ImageLayout: Sendable, Hashable {
        public var width: Int
        public var height: Int
        /// Bytes from one row's start to the next; nil: `width` × bytes per pixel.
        public var stride: Int?
        public var pixelFormat: PixelFormat

        public init(width: Int, height: Int, stride: Int? = nil, pixelFormat: PixelFormat) {
            self.width = width
            self.height = height
            self.stride = stride
            self.pixelFormat = pixelFormat
        }

        /// The stride stored, or the packed one for a format of known size.
        public var effectiveStride: Int? {
            stride ?? pixelFormat.bytesPerPixel.flatMap { bpp in
                let (s, overflow) = width.multipliedReportingOverflow(by: bpp)
                return overflow ? nil : s
            }
        }

        /// Bytes from the first pixel to the end of the last row's last pixel; nil for a
        /// format of unknown size or on overflow.
        public var extent: Int? {
            guard let bpp = pixelFormat.bytesPerPixel, let stride = effectiveStride else { return nil }
            let (row, o1) = width.multipliedReportingOverflow(by: bpp)
            let (rows, o2) = (height - 1).multipliedReportingOverflow(by: stride)
            let (sum, o3) = rows.addingReportingOverflow(row)
            return o1 || o2 || o3 ? nil : sum
        }
    }

    /// A DRM fourcc code (`<drm/drm_fourcc.h>`), as its four ASCII characters:
    /// `XR24` is `DRM_FORMAT_XRGB8888`.
    public struct PixelFormat: Sendable, Hashable, CustomStringConvertible {
        public var fourcc: String
        public init(fourcc: String) { self.fourcc = fourcc }

        /// The single-plane packed formats whose size readers know (FORMAT.md's table):
        /// fourcc, DRM name, bytes per pixel.
        static let known: [(fourcc: String, name: String, bytesPerPixel: Int)] = [
            ("R8  ", "R8", 1), ("R16 ", "R16", 2), ("GR88", "GR88", 2), ("RG24", "RGB888", 3), ("BG24", "BGR888", 3),
            ("XR24", "XRGB8888", 4), ("AR24", "ARGB8888", 4), ("XB24", "XBGR8888", 4), ("AB24", "ABGR8888", 4),
            ("RX24", "RGBX8888", 4), ("RA24", "RGBA8888", 4), ("BX24", "BGRX8888", 4), ("BA24", "BGRA8888", 4),
            ("YUYV", "YUYV", 2), ("UYVY", "UYVY", 2),
        ]

        /// The format with a DRM name (`XRGB8888`) or a fourcc (`XR24`) from the table;
        /// nil for anything else (make others with ``init(fourcc:)``).
        public init?(named name: String) {
            guard let entry = Self.known.first(where: { $0.name == name || $0.fourcc == name }) else { return nil }
            fourcc = entry.fourcc
        }

        /// `ABGR8888`: R, G, B, A in memory, the usual "RGBA" buffer.
        public static let abgr8888 = Self(fourcc: "AB24")
        /// `XRGB8888`: B, G, R, X in memory, the usual desktop framebuffer.
        public static let xrgb8888 = Self(fourcc: "XR24")
        public static let argb8888 = Self(fourcc: "AR24")
        public static let xbgr8888 = Self(fourcc: "XB24")
        public static let rgb888 = Self(fourcc: "RG24")
        public static let bgr888 = Self(fourcc: "BG24")
        public static let r8 = Self(fourcc: "R8  ")

        public var bytesPerPixel: Int? { Self.known.first { $0.fourcc == fourcc }?.bytesPerPixel }
        /// The DRM name (`XRGB8888`) for a known format.
        public var drmName: String? { Self.known.first { $0.fourcc == fourcc }?.name }
        public var description: String { drmName.map { "\(fourcc) (\($0))" } ?? fourcc }
    }
}
