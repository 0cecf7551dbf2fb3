import Glibc
import ShmBusSystem
import SystemPackage
import Testing

/// Ownership of the one descriptor type: closed exactly once, and take / borrow /
/// duplicate do what they say.
@Suite struct UnixFileDescriptorTests {
    /// Whether `fd` is an open descriptor of this process (`fcntl(F_GETFD)`).
    static func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) != -1 }

    @Test func releasingTheLastReferenceClosesIt() throws {
        var number: Int32 = -1
        do {
            let pipe = try UnixFileDescriptor.pipe()
            number = pipe.read.rawValue
            #expect(Self.isOpen(number))
        }
        #expect(!Self.isOpen(number))
    }

    @Test func closeClosesOnceAndASecondCloseIsAnError() throws {
        let pipe = try UnixFileDescriptor.pipe()
        let number = pipe.read.rawValue
        try pipe.read.close()
        #expect(!pipe.read.isOpen)
        #expect(pipe.read.rawValue == -1, "a late use gets EBADF, never a reused number")
        // Another file may now get the number; the object must not close it again.
        let reused = try UnixFileDescriptor.open("/dev/null", O_RDONLY)
        let second = #expect(throws: SystemError.self) { try pipe.read.close() }
        #expect(second?.errno == .badFileDescriptor)
        #expect(second?.call == "close")
        if reused.rawValue == number { #expect(Self.isOpen(number)) }
    }

    @Test func takeHandsTheNumberOnAndTheObjectNoLongerClosesIt() throws {
        var number: Int32 = -1
        do {
            let fd = try UnixFileDescriptor.open("/dev/null", O_RDONLY)
            number = try fd.take()
            #expect(!fd.isOpen)
            #expect(throws: SystemError.self) { _ = try fd.take() }
        }
        #expect(Self.isOpen(number))
        #expect(Glibc.close(number) == 0)
    }

    @Test func takingAdoptsARawNumber() throws {
        let raw = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
        try #require(raw >= 0)
        do { _ = UnixFileDescriptor(taking: raw) }
        #expect(!Self.isOpen(raw))
    }

    @Test func duplicatesAreIndependentOwnersOfTheSameFile() throws {
        let pipe = try UnixFileDescriptor.pipe()
        let copy = try pipe.write.duplicate()
        #expect(copy.rawValue != pipe.write.rawValue)
        #expect(copy != pipe.write, "equality is identity of the owner")
        #expect(fcntl(copy.rawValue, F_GETFD) & FD_CLOEXEC != 0, "duplicates are close-on-exec")
        try pipe.write.close()
        // The copy still writes into the same pipe.
        #expect(try copy.writeAll(Array("hi".utf8)) == 2)
        var buffer = [UInt8](repeating: 0, count: 2)
        #expect(try buffer.withUnsafeMutableBytes { try pipe.read.read(into: $0) } == 2)
        #expect(buffer == Array("hi".utf8))
        // init(duplicating:) leaves the caller's number open.
        let other = try UnixFileDescriptor(duplicating: copy.rawValue)
        try other.close()
        #expect(copy.isOpen && Self.isOpen(copy.rawValue))
    }

    @Test func borrowingKeepsTheOwnerAndTheNumber() throws {
        let fd = try UnixFileDescriptor.open("/dev/null", O_RDONLY)
        let seen = fd.withRawValue { raw in (raw, Self.isOpen(raw)) }
        #expect(seen.0 == fd.rawValue && seen.1)
        #expect(fd.fileDescriptor.rawValue == fd.rawValue)
        #expect(fd.isOpen)
    }

    @Test func closingFromManyThreadsClosesExactlyOnce() async throws {
        for _ in 0..<50 {
            let fd = try UnixFileDescriptor.open("/dev/null", O_RDONLY)
            let successes = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<4 { group.addTask { (try? fd.close()) != nil } }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(successes == 1)
        }
    }
}
