import DBus
import ShmBusProtocol

/// The per-channel and per-segment objects under `/org/shmbus/Registry1`, announced
/// through its ObjectManager. Their properties are read from the registry (and, for
/// the live counters, from the segment itself) on each request.
extension SegmentRegistry {
    func exportSegment(_ name: String) async {
        guard let connection, let segment = segments[name] else { return }
        // The doorbell held for subscribers is a descriptor too; its room was checked
        // with the segment's.
        if segment.doorbell != nil, segment.doorbellCharge == nil {
            segments[name]?.doorbellCharge = try? DescriptorBudget.shared.charge(force: true)
        }
        do {
            let object = SegmentObject(name: name, segment: segment, registry: WeakRegistry(self))
            let export = try await connection.export([Segment1.interface(implementedBy: object)], at: segment.path)
            // The segment may have gone while exporting; then the handle is dropped here.
            if segments[name] != nil { segments[name]?.export = export }
        } catch {
            logger.error("cannot export segment object", metadata: ["segment": "\(name)", "error": "\(error)"])
        }
    }

    func exportChannel(_ name: String) async {
        guard let connection, let channel = channels[name] else { return }
        do {
            let object = ChannelObject(name: name, registry: WeakRegistry(self))
            let export = try await connection.export([Channel1.interface(implementedBy: object)], at: channel.path)
            if channels[name] != nil { channels[name]?.export = export }
        } catch {
            logger.error("cannot export channel object", metadata: ["channel": "\(name)", "error": "\(error)"])
        }
    }

    func currentGeneration(of channel: String) -> UInt64 {
        channels[channel]?.current.flatMap { segments[$0]?.file.generation } ?? 0
    }

    func channelChanged(_ name: String, _ properties: [Channel1.PropertyName]) async {
        try? await channels[name]?.export?.propertiesChanged(properties)
    }

    func segmentChanged(_ name: String, _ properties: [Segment1.PropertyName]) async {
        try? await segments[name]?.export?.propertiesChanged(properties)
    }
}

/// The exports live in the registry's state, so the objects must not keep the
/// registry alive.
struct WeakRegistry: Sendable {
    weak let registry: SegmentRegistry?
    init(_ registry: SegmentRegistry) { self.registry = registry }
}

/// `org.shmbus.Segment1` of one segment: what never changes is captured, the rest is
/// asked of the registry (or read from the segment) when a client asks.
struct SegmentObject: Segment1.Implementation {
    let name: String
    let segment: SegmentRegistry.Segment
    let registry: WeakRegistry

    private var current: SegmentRegistry.Segment? { get async { await registry.registry?.segment(name) } }

    var channel: String { segment.channel }
    var owner: String { get async { await current?.owner ?? "" } }
    var generation: UInt64 { segment.file.generation }
    var capacity: UInt64 { segment.file.capacity }
    var committedBytes: UInt64 { segment.file.liveState().committedBytes }
    var chunkCount: UInt64 { segment.file.liveState().chunkCount }
    var lastSequence: UInt64 { segment.file.liveState().lastSequence }
    var state: String { get async { await current?.state.rawValue ?? "removed" } }
    var persistent: Bool { segment.persistent }
    var created: UInt64 { segment.createdMicroseconds }
    var expires: UInt64 { get async { await current?.expiresMicroseconds ?? 0 } }
    var replaces: String { segment.replaces }
    var replacedBy: String { get async { await current?.replacedBy ?? "" } }
    var readers: [String] { segment.readers.wire ?? [] }
}

/// `org.shmbus.Channel1` of one channel, read from the registry on each request.
struct ChannelObject: Channel1.Implementation {
    let name: String
    let registry: WeakRegistry

    private var current: SegmentRegistry.Channel? { get async { await registry.registry?.channel(name) } }

    var owner: String { get async { await current?.owner ?? "" } }
    var currentSegment: String { get async { await current?.current ?? "" } }
    var generation: UInt64 { get async { await registry.registry?.currentGeneration(of: name) ?? 0 } }
    var segments: [ObjectPath] { get async { (await current?.segments ?? []).map(ShmBusProtocol.segmentPath) } }

    // Statistics (SegmentRegistry+Statistics.swift), each read fresh.
    private var figures: SegmentRegistry.Figures { get async { await registry.registry?.figures(of: name) ?? .init() } }
    var publishedChunks: UInt64 { get async { await figures.publishedChunks } }
    var publishedBytes: UInt64 { get async { await figures.publishedBytes } }
    var chunkRate: Double { get async { await figures.chunkRate } }
    var byteRate: Double { get async { await figures.byteRate } }
    var collections: UInt64 { get async { await figures.collections } }
    var committedBytes: UInt64 { get async { await figures.committedBytes } }
    var liveBytes: UInt64 { get async { await figures.liveBytes } }
    var readerCount: UInt32 { get async { await figures.readerCount } }
    var publisherUser: UInt32 { get async { await figures.publisherUser } }
    var publisherProcess: UInt32 { get async { await figures.publisherProcess } }
    var timeToLive: UInt64 { get async { await figures.timeToLive } }
}
