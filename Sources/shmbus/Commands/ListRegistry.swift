import ArgumentParser
import Foundation
import ShmBus

struct ListRegistry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", abstract: "List channels and segments in the registry.")

    @OptionGroup var bus: BusOption

    @Flag(help: "One JSON object with every field.")
    var json = false

    struct Listing: Encodable {
        var channels: [ChannelInfo]
        var segments: [SegmentInfo]
    }

    func run() async throws {
        try await reportingFailures {
            let registry = try await RegistryClient.connect(to: bus.resolved())
            let listing = Listing(channels: try await registry.channels(), segments: try await registry.segments())
            if json {
                try JSONOutput.print(listing)
                return
            }
            if listing.channels.isEmpty {
                try Output.write("no channels")
                return
            }
            var channels = TextTable("CHANNEL", "OWNER", "GEN", "SEGMENTS", "SIZE")
            for c in listing.channels {
                channels.add(c.name, c.owner.isEmpty ? "-" : c.owner, "\(c.generation)", "\(c.segmentCount)", ByteCount.human(c.bytes))
            }
            try Output.write(channels.rendered + "\n")
            var segments = TextTable("SEGMENT", "CHANNEL", "GEN", "STATE", "CAPACITY", "USED", "CHUNKS", "PERSISTENT")
            for s in listing.segments {
                segments.add(
                    s.name, s.channel, "\(s.generation)", s.state, ByteCount.human(s.capacity), ByteCount.human(s.committedBytes),
                    "\(s.chunkCount)", s.persistent ? "yes" : "no")
            }
            try Output.write(segments.rendered)
        }
    }
}
