import DBus
import ShmBus

/// The per-channel and per-segment objects under `/org/shmbus/Registry1`, announced
/// through its ObjectManager. Their properties are read from the registry (and, for
/// the live counters, from the segment itself) on each request.
extension SegmentRegistry {
    func exportSegment(_ name: String) async {
        guard let connection, let segment = segments[name] else { return }
        do {
            let interface = try ShmBusProtocol.segmentInterface()
            let file = segment.file
            let properties: [(String, DBusProperty.Getter)] = [
                ("Name", { .string(name) }),
                ("Channel", { .string(segment.channel) }),
                ("Owner", { [weak self] in .string(await self?.segment(name)?.owner ?? "") }),
                ("Generation", { .uint64(file.generation) }),
                ("Capacity", { .uint64(file.capacity) }),
                ("CommittedBytes", { .uint64(file.liveState().committedBytes) }),
                ("ChunkCount", { .uint64(file.liveState().chunkCount) }),
                ("LastSequence", { .uint64(file.liveState().lastSequence) }),
                ("State", { [weak self] in .string(await self?.segment(name)?.state.rawValue ?? "removed") }),
                ("Persistent", { .boolean(segment.persistent) }),
                ("Created", { .uint64(segment.createdMicroseconds) }),
                ("Expires", { [weak self] in .uint64(await self?.segment(name)?.expiresMicroseconds ?? 0) }),
                ("Replaces", { .string(segment.replaces) }),
                ("ReplacedBy", { [weak self] in .string(await self?.segment(name)?.replacedBy ?? "") }),
            ]
            var implemented = interface
            for (property, get) in properties {
                implemented = try implemented.implementingProperty(property, get: get)
            }
            let export = try await connection.export([implemented], at: segment.path)
            // The segment may have gone while exporting; then the handle is dropped here.
            if segments[name] != nil { segments[name]?.export = export }
        } catch {
            logger.error("cannot export segment object", metadata: ["segment": "\(name)", "error": "\(error)"])
        }
    }

    func exportChannel(_ name: String) async {
        guard let connection, let channel = channels[name] else { return }
        do {
            let interface = try ShmBusProtocol.channelInterface()
            let properties: [(String, DBusProperty.Getter)] = [
                ("Name", { .string(name) }),
                ("Owner", { [weak self] in .string(await self?.channel(name)?.owner ?? "") }),
                ("CurrentSegment", { [weak self] in .string(await self?.channel(name)?.current ?? "") }),
                ("Generation", { [weak self] in .uint64(await self?.currentGeneration(of: name) ?? 0) }),
                ("Segments", { [weak self] in
                    .array(.objectPath, (await self?.channel(name)?.segments ?? []).map { .objectPath(ShmBusProtocol.segmentPath($0)) })
                }),
            ]
            var implemented = interface
            for (property, get) in properties {
                implemented = try implemented.implementingProperty(property, get: get)
            }
            let export = try await connection.export([implemented], at: channel.path)
            if channels[name] != nil { channels[name]?.export = export }
        } catch {
            logger.error("cannot export channel object", metadata: ["channel": "\(name)", "error": "\(error)"])
        }
    }

    func currentGeneration(of channel: String) -> UInt64 {
        channels[channel]?.current.flatMap { segments[$0]?.file.generation } ?? 0
    }

    func channelChanged(_ name: String, _ properties: [String]) async {
        try? await channels[name]?.export?.propertiesChanged(properties, interface: ShmBusProtocol.channelInterfaceName)
    }

    func segmentChanged(_ name: String, _ properties: [String]) async {
        try? await segments[name]?.export?.propertiesChanged(properties, interface: ShmBusProtocol.segmentInterfaceName)
    }
}
