import Foundation
import Glibc

/// Reading a child's output without blocking a thread of the concurrency pool.
extension ChildProcess {
    /// Reads the child's stdout and stderr pipes to their ends on a thread of its own,
    /// so that a task waiting for a child never blocks a thread of the concurrency pool
    /// (with two cores, two blocked pool threads stall every task of the process,
    /// including the services the child may be talking to).
    public func collectOutput() async throws -> (stdout: Data, stderr: Data) {
        let out = standardOutput
        let err = standardError
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do {
                    continuation.resume(returning: try Self.readBoth(out, err))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.start()
        }
    }

    /// Reads one line (without its newline) from the child's stdout on a thread of its
    /// own; nil at end of file.
    public func readLine() async throws -> String? {
        guard let out = standardOutput else { return nil }
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                var line: [UInt8] = []
                var byte: UInt8 = 0
                do {
                    while true {
                        let n = try withUnsafeMutableBytes(of: &byte) { try out.read(into: $0, retryOnInterrupt: true) }
                        if n == 0 {
                            continuation.resume(returning: line.isEmpty ? nil : String(decoding: line, as: UTF8.self))
                            return
                        }
                        if byte == UInt8(ascii: "\n") { break }
                        line.append(byte)
                    }
                    continuation.resume(returning: String(decoding: line, as: UTF8.self))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.start()
        }
    }

    /// The child's stdout as lines (without newlines), read on a thread of its own in
    /// 64 KiB blocks until end of file. For chatty children; do not mix with
    /// ``readLine()``.
    public func lines() -> AsyncThrowingStream<String, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: String.self)
        guard let out = standardOutput else {
            continuation.finish()
            return stream
        }
        let thread = Thread {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            do {
                while true {
                    let n = try buffer.withUnsafeMutableBytes { try out.read(into: $0, retryOnInterrupt: true) }
                    if n == 0 { break }
                    var start = 0
                    for i in 0..<n where buffer[i] == UInt8(ascii: "\n") {
                        pending.append(contentsOf: buffer[start..<i])
                        continuation.yield(String(decoding: pending, as: UTF8.self))
                        pending.removeAll(keepingCapacity: true)
                        start = i + 1
                    }
                    pending.append(contentsOf: buffer[start..<n])
                }
                if !pending.isEmpty { continuation.yield(String(decoding: pending, as: UTF8.self)) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        thread.start()
        return stream
    }

    /// Reads two pipes to their ends, whichever has data (`poll`), so that a child
    /// filling one pipe never blocks on it while the other is read.
    private static func readBoth(_ first: UnixFileDescriptor?, _ second: UnixFileDescriptor?) throws -> (Data, Data) {
        var outputs = [Data(), Data()]
        var open = [first, second]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open.contains(where: { $0 != nil }) {
            var fds = open.map { pollfd(fd: $0?.rawValue ?? -1, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                throw SystemError.current(call: "poll")
            }
            for i in 0..<2 where fds[i].revents != 0 {
                guard let fd = open[i] else { continue }
                let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) }
                if n == 0 { open[i] = nil } else { outputs[i].append(contentsOf: buffer[0..<n]) }
            }
        }
        return (outputs[0], outputs[1])
    }

    /// Reads the child's stdout pipe to its end, blocking the calling thread. From a
    /// task, use ``collectOutput()``.
    public func readAllOutput() throws -> Data {
        guard let fd = standardOutput else { return Data() }
        return try Self.readAll(fd)
    }

    /// Reads `fd` to end of file.
    public static func readAll(_ fd: UnixFileDescriptor) throws -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) }
            if n == 0 { return data }
            data.append(contentsOf: buffer[0..<n])
        }
    }
}
