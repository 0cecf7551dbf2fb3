import DBus
import Locking
import SharedSegments
import ShmBusPolicy

/// `/org/shmbus/Publisher1` of a publishing connection: the segments it still
/// serves and the one it appends to now, for subscribers following a collection
/// while the registry is away. The `Committed` signal it declares is emitted by the
/// ``CommitNotifier``.
struct PublisherObject: Publisher1.Implementation {
    let channel: String
    let writer: Lock<ChannelWriter>
    /// Who callers are, from the bus: the publisher applies its read policy itself.
    let peers: PeerDirectory
    /// This process's user (and app, when it is sandboxed), whose channel it is.
    let owner: ChannelOwner
    let readers: ReadPolicy
    let leases: PublisherLeases

    /// Errors are this contract's `org.shmbus.Error.*`, like the registry's.
    func invalidArguments(_ error: DBusError) -> any Error { ShmBusError.invalidArgument(error.message) }

    func openSegment(segment name: String, call: DBusMethodCall) async throws -> UnixFileDescriptor {
        try AccessRules.checkRead(try await peers.identity(of: call.sender), channel: channel, owner: owner, policy: readers)
        return try Self.readOnlyDescriptor(of: name, in: writer)
    }

    /// A subscriber's lease page, for a publisher that reuses memory: granted by the
    /// read policy, like the segments it protects.
    func lease(page: UnixFileDescriptor, call: DBusMethodCall) async throws {
        try AccessRules.checkRead(try await peers.identity(of: call.sender), channel: channel, owner: owner, policy: readers)
        try leases.add(page, for: call.sender)
    }

    var channels: [String] { [channel] }
    var currentSegment: String { writer.withLock { $0.current.id.name } }

    /// A read-only descriptor of the segment `name` if readers may still need it (the
    /// current one or one not retired yet).
    static func readOnlyDescriptor(of name: String, in writer: Lock<ChannelWriter>) throws(ShmBusError) -> UnixFileDescriptor {
        // Only a lookup under the writer's lock (which publishing takes): the reference
        // keeps the descriptor open, and the reopen through /proc, a path lookup,
        // happens outside it.
        let found = writer.withLock { writer in writer.liveSegments.first(where: { $0.id.name == name })?.fileDescriptor }
        guard let found else { throw .notFound("segment '\(name)' is not one this publisher still serves") }
        do throws(SegmentError) {
            return try Memfd.reopenReadOnly(found)
        } catch {
            throw ShmBusError(error, context: "segment '\(name)'")
        }
    }
}
