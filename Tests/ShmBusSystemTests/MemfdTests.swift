import Glibc
import ShmBusSystem
import SystemPackage
import Testing

/// memfd_create and the seals, as the kernel enforces them.
@Suite struct MemfdTests {
    @Test func aNewMemfdIsSealableAndSized() throws {
        let fd = try UnixFileDescriptor.memfd(name: "shmbus-test")
        #expect(fd.isMemfd)
        #expect(try fd.seals() == [])
        try fd.truncate(to: 8192)
        #expect(try fd.size() == 8192)
        #expect(fcntl(fd.rawValue, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func sealsStopResizingAndAreFinal() throws {
        let fd = try UnixFileDescriptor.memfd(name: "shmbus-test")
        try fd.truncate(to: 4096)
        try fd.addSeals([.shrink, .grow, .futureWrite, .seal])
        #expect(try fd.seals() == [.shrink, .grow, .futureWrite, .seal])
        let grow = #expect(throws: SystemError.self) { try fd.truncate(to: 8192) }
        #expect(grow?.errno == .notPermitted && grow?.call == "ftruncate")
        let more = #expect(throws: SystemError.self) { try fd.addSeals(.write) }
        #expect(more?.errno == .notPermitted && more?.call == "fcntl(F_ADD_SEALS)")
        #expect(more?.context.contains("F_SEAL_WRITE") == true)
        // F_SEAL_FUTURE_WRITE: no new writable mapping, even through a read-write reopen.
        let readWrite = try UnixFileDescriptor.open("/proc/self/fd/\(fd.rawValue)", O_RDWR)
        #expect(mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, readWrite.rawValue, 0) == MAP_FAILED)
    }

    @Test func aReadOnlyReopenCannotWrite() throws {
        let fd = try UnixFileDescriptor.memfd(name: "shmbus-test")
        try fd.truncate(to: 4096)
        let readOnly = try fd.reopenReadOnly()
        #expect(readOnly.isMemfd)
        let write = #expect(throws: SystemError.self) { _ = try readOnly.writeAll([1]) }
        #expect(write?.errno == .badFileDescriptor)
    }

    @Test func aFileThatIsNotAMemfdHasNoSeals() throws {
        let pipe = try UnixFileDescriptor.pipe()
        #expect(!pipe.read.isMemfd)
        let error = #expect(throws: SystemError.self) { _ = try pipe.read.seals() }
        #expect(error?.errno == .invalidArgument && error?.call == "fcntl(F_GET_SEALS)")
    }
}
