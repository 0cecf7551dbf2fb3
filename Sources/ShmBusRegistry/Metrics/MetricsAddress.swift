import Glibc
import ShmBusProtocol

/// `ADDRESS:PORT` for the metrics endpoint: `127.0.0.1:9464`, `[::1]:9464`,
/// `localhost:9464`, or `:9464` for every address; port 0 lets the kernel pick one.
/// Resolved once, when parsed, so that the loopback check judges the address that will
/// be bound, not its spelling.
public struct MetricsAddress: Sendable, CustomStringConvertible {
    /// The resolved socket address, as sockaddr bytes.
    private let storage: [UInt8]
    public let family: Int32

    public init(parsing text: String) throws(ShmBusError) {
        let host: String
        let port: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .invalidArgument("--metrics '\(text)': expected [ADDRESS]:PORT") }
            port = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") {
            host = String(text[..<colon])
            port = text[text.index(after: colon)...]
        } else {
            throw .invalidArgument("--metrics '\(text)': expected ADDRESS:PORT (an IPv6 address in brackets)")
        }
        guard let number = UInt16(port) else { throw .invalidArgument("--metrics '\(text)': the port must be 0 to 65535") }
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let status = host.isEmpty ? getaddrinfo(nil, "\(number)", &hints, &found) : getaddrinfo(host, "\(number)", &hints, &found)
        guard status == 0, let first = found, let address = first.pointee.ai_addr else {
            throw .invalidArgument("--metrics '\(text)': cannot resolve '\(host)': \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        family = first.pointee.ai_family
        storage = Array(UnsafeRawBufferPointer(start: address, count: Int(first.pointee.ai_addrlen)))
    }

    private init(storage: [UInt8], family: Int32) {
        self.storage = storage
        self.family = family
    }

    /// 127.0.0.0/8, ::1, or an IPv4-mapped 127.x.
    public var isLoopback: Bool {
        storage.withUnsafeBytes { raw in
            switch family {
            case AF_INET:
                let address = raw.loadUnaligned(as: sockaddr_in.self)
                return UInt32(bigEndian: address.sin_addr.s_addr) >> 24 == 127
            case AF_INET6:
                let bytes = withUnsafeBytes(of: raw.loadUnaligned(as: sockaddr_in6.self).sin6_addr) { Array($0) }
                let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
                return bytes == [UInt8](repeating: 0, count: 15) + [1] || (mapped && bytes[12] == 127)
            default:
                return false
            }
        }
    }

    /// Throws `InvalidArgument` for an address that is not loopback, unless `anyAddress`:
    /// the figures name every channel and publisher, which is not for the network by
    /// default.
    public func checkServable(anyAddress: Bool) throws(ShmBusError) {
        guard anyAddress || isLoopback else {
            throw .invalidArgument(
                "--metrics \(self) is not a loopback address: the figures name every channel and publisher; "
                    + "pass --metrics-any-address to serve them to the network anyway")
        }
    }

    /// `127.0.0.1:9464`, `[::1]:9464`.
    public var description: String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let status = storage.withUnsafeBytes { raw in
            getnameinfo(
                raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count), &host, socklen_t(host.count),
                &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
        }
        guard status == 0 else { return "?" }
        // getnameinfo NUL-terminates both within their buffers.
        func text(_ buffer: [CChar]) -> String { String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        let name = text(host)
        return (family == AF_INET6 ? "[\(name)]" : name) + ":" + text(service)
    }

    /// A listening socket bound here, and the address it got.
    func listen() throws(ShmBusError) -> (Int32, MetricsAddress) {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Self.failure("cannot make a socket for \(self)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = storage.withUnsafeBytes { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count)) == 0
        }
        guard bound, Glibc.listen(fd, 16) == 0 else {
            let failure = Self.failure("cannot listen on \(self)")
            close(fd)
            throw failure
        }
        var actual = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return (fd, self) }
        let bytes = withUnsafeBytes(of: &actual) { Array($0.prefix(Int(length))) }
        return (fd, MetricsAddress(storage: bytes, family: family))
    }

    private static func failure(_ what: String) -> ShmBusError {
        ShmBusError(.system, "\(what): \(String(cString: strerror(errno)))")
    }
}
