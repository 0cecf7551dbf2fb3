import DBus
import Glibc
import ShmBusPolicy

/// The publisher's side of the bus: its exported object and the registry it follows.
extension Publisher {
    /// Exports `/org/shmbus/Publisher1` on this publisher's connection.
    func exportObject() async throws(ShmBusError) {
        let object = PublisherObject(
            channel: channel, writer: writer, peers: PeerDirectory(connection: connection, otherUsers: .takeForTheirUser),
            owner: ChannelOwner(uid: getuid(), appID: FlatpakInfo.ownAppID()), readers: options.readers, leases: leases)
        let handle = try await ShmBusError.rethrowing {
            try await connection.export([Publisher1.interface(implementedBy: object)], at: ShmBusProtocol.publisherPath)
        }
        export.withLock { $0 = handle }
    }

    /// Re-registers the current segment whenever a registry (re)appears on the bus.
    func startFollowingRegistry() async throws(ShmBusError) {
        let owners = try await ShmBusError.rethrowing { try await connection.nameOwnerChanges(for: ShmBusProtocol.registryName) }
        let registrar = self.registrar
        let notifier = self.notifier
        let logger = self.logger
        let task = Task {
            do {
                for try await change in owners {
                    if let owner = change.newOwner {
                        logger.info("registry appeared; registering again", metadata: ["owner": "\(owner)"])
                    }
                    registrar.registryChanged(owner: change.newOwner)
                    notifier.flush()
                }
            } catch {
                // The connection closed.
            }
        }
        follower.withLock { $0 = task }
    }
}
