import CShmBusLinux
import Dispatch
import Foundation
import Glibc
import Locking
import Logging
import ShmBusProtocol

/// Answers `GET /metrics` with the registry's Prometheus text, on a TCP socket of its
/// own (`shmbus daemon --metrics ADDRESS:PORT`).
///
/// swift-prometheus renders the text but serves nothing, and SwiftNIO (or a server on
/// it) would be the daemon's biggest dependency by far, for one request a scrape
/// interval. So this is a minimal HTTP/1.1 responder: one thread of its own, blocking in
/// accept(2), one connection at a time, `Connection: close`; requests beyond 8 KiB or
/// slower than 2 s are dropped, so a stuck client delays a scrape by at most that.
/// Only GET and HEAD of `/metrics` are answered (404 and 405 otherwise).
public final class MetricsServer: Sendable {
    /// The listening socket; shut down by ``stop()``, closed by the serving thread.
    private let listener: Int32
    /// Where it listens, as bound (the port chosen when 0 was asked for).
    public let address: MetricsAddress
    private let render: @Sendable () async -> String
    private let stopped = Lock(false)
    private let logger: Logger

    /// Listens on `address` and serves from a thread of its own until ``stop()``.
    /// - Throws: ``ShmBusError`` `InvalidArgument` for an address that is not loopback
    ///   unless `anyAddress`, `System` when the socket cannot be bound.
    public init(
        listeningOn address: MetricsAddress, anyAddress: Bool = false, logger: Logger,
        render: @escaping @Sendable () async -> String
    ) throws(ShmBusError) {
        try address.checkServable(anyAddress: anyAddress)
        let (listener, bound) = try address.listen()
        self.listener = listener
        self.address = bound
        self.render = render
        self.logger = logger
        let thread = Thread { [self] in serve() }
        thread.name = "shmbus-metrics"
        thread.start()
    }

    /// Stops accepting; the thread closes the socket and ends.
    public func stop() {
        stopped.withLock { $0 = true }
        shutdown(listener, Int32(SHUT_RDWR))
    }

    private func serve() {
        defer { close(listener) }
        while true {
            let client = shmbus_accept_cloexec(listener)
            if client < 0 {
                if stopped.withLock({ $0 }) { return }
                let error = errno
                if error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM {
                    // Out of descriptors: try again later rather than spin.
                    logger.warning("metrics: cannot accept", metadata: ["errno": "\(error)"])
                    usleep(100_000)
                }
                continue
            }
            answer(client)
            close(client)
        }
    }

    private func answer(_ client: Int32) {
        Self.setTimeout(client, SO_RCVTIMEO, seconds: 2)
        Self.setTimeout(client, SO_SNDTIMEO, seconds: 5)
        guard let request = Self.readRequest(client) else { return }
        let response: HTTPResponse
        switch HTTPResponse.route(request) {
        case .metrics(let head):
            response = HTTPResponse(
                status: "200 OK", contentType: "text/plain; version=0.0.4; charset=utf-8", body: rendered(), sendsBody: !head)
        case .response(let fixed):
            response = fixed
        }
        Self.send(client, response.bytes)
    }

    /// The text, rendered on the concurrency pool while this thread (not one of the
    /// pool's) waits for it.
    private func rendered() -> String {
        let text = Lock("")
        let done = DispatchSemaphore(value: 0)
        let render = render
        Task {
            let rendered = await render()
            text.withLock { $0 = rendered }
            done.signal()
        }
        done.wait()
        return text.withLock { $0 }
    }

    /// The request head, up to the blank line: nil when the client sent more than 8 KiB
    /// without one, went quiet for 2 s, or closed.
    static func readRequest(_ client: Int32) -> String? {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 2048)
        while data.count <= 8192 {
            let n = recv(client, &buffer, buffer.count, 0)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return nil }
            data += buffer.prefix(n)
            if let end = data.firstRange(of: [13, 10, 13, 10]) { return String(decoding: data[..<end.lowerBound], as: UTF8.self) }
        }
        return nil
    }

    static func send(_ client: Int32, _ bytes: [UInt8]) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(client, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            done += n
        }
    }

    static func setTimeout(_ socket: Int32, _ option: Int32, seconds: Int) {
        var value = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
    }
}
