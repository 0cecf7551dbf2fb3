import ArgumentParser
import Foundation
import Glibc
import Logging
import NATS
import ShmBus
import ShmBusBridge

/// `shmbus bridge`: channels of this host into a NATS JetStream stream, and channels of
/// the stream into this host's registry (docs/BRIDGE.md).
struct BridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract: "Carry channels between hosts through a NATS JetStream stream.",
        discussion: """
            --export sends a channel's chunks (or, for a prefix ending in /, those of every channel under it) \
            into the stream; --import makes this host's registry hold the stream's channels, with this bridge \
            as their publisher. Keys, sequences and attributes are kept; a restarted bridge continues where it \
            stopped (durable consumers, named after --name). SIGTERM and SIGINT stop it. A server that cannot \
            be reached is tried again every second; one that refuses the credentials or the TLS handshake \
            ends the bridge with exit status 69 (EX_UNAVAILABLE) and one line on stderr. docs/BRIDGE.md has \
            the subjects and headers a plain NATS client reads.
            """)

    @Option(help: "The NATS server URL (repeat it for a cluster).")
    var server: [String] = ["nats://127.0.0.1:4222"]

    @Option(help: "The JetStream stream (1-32 of A-Z a-z 0-9 _ -).")
    var stream = "SHMBUS"

    @Option(help: "This bridge's name: its durable consumers are named after it.")
    var name = "shmbus-bridge"

    @Option(help: "A channel, or a prefix ending in /, to export (repeatable).")
    var export: [String] = []

    @Option(name: .customLong("import"), help: "A channel, or a prefix ending in /, to import (repeatable).")
    var imports: [String] = []

    @Option(help: "Payload bytes per message at most (lowered to fit the server's max_payload).")
    var partSize: ByteCount = ByteCount(1 << 20)

    @Option(help: "Replicas of the stream, when this bridge creates it.")
    var replicas = 1

    @Option(help: ArgumentHelp("How long the stream keeps messages (MaxAge); 0: no limit.", valueName: "seconds"))
    var maxAge: Double = 0

    @Option(help: "The stream's byte limit (MaxBytes); none by default.")
    var maxBytes: ByteCount?

    @Option(help: ArgumentHelp("How long the stream remembers Nats-Msg-Ids to drop repeated parts (Duplicates).", valueName: "seconds"))
    var duplicateWindow: Double = 120

    @Option(help: ArgumentHelp("Where a new export starts: oldest or now.", valueName: "oldest|now"))
    var exportFrom = "oldest"

    @Option(help: ArgumentHelp("Where a new import's consumer starts: last (the newest chunk of each key) or all.", valueName: "last|all"))
    var importFrom = "last"

    @Option(help: ArgumentHelp("How long a delivered part may stay unacknowledged (AckWait).", valueName: "seconds"))
    var ackWait: Double = 60

    @Option(help: "Segment capacity of imported channels (at least the largest chunk).")
    var capacity: ByteCount = ByteCount(64 << 20)

    @Option(help: ArgumentHelp("How long imported channels outlive a stopped bridge.", valueName: "seconds"))
    var hold: Double = 300

    @Option(help: "Who besides this user may read imported channels (as for publish --readers).")
    var readers: [ReaderGrants] = []

    @Option(help: "A NATS .creds file (user JWT and NKey seed).")
    var creds: String?

    @Option(help: "A NATS user name (with --password-file).")
    var user: String?

    @Option(help: "A file holding the NATS password.")
    var passwordFile: String?

    @Option(help: "A file holding a NATS token.")
    var tokenFile: String?

    @Flag(help: "Require TLS.")
    var tls = false

    @Option(help: "CA certificates (PEM) to verify the servers with.")
    var tlsCA: String?

    @Option(help: "This client's certificate (PEM), with --tls-key.")
    var tlsCert: String?

    @Option(help: "This client's private key (PEM).")
    var tlsKey: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @OptionGroup var bus: BusOption

    func run() async throws {
        CommandLogging.bootstrap(level: logLevel)
        let logger = Logger(label: "org.shmbus.bridge")
        try await reportingFailures {
            let configuration = try bridgeConfiguration()
            let task = Task { try await Bridge.run(configuration, logger: logger) }
            let signals = SignalHandlers([SIGTERM, SIGINT]) { signal in
                logger.info("stopping", metadata: ["signal": "\(signal)"])
                task.cancel()
            }
            try await task.value
            withExtendedLifetime(signals) {}
        }
    }

    func bridgeConfiguration() throws -> BridgeConfiguration {
        var nats = NATSConnection.Options(servers: server)
        nats.name = name
        nats.credentialsFile = creds
        nats.user = user
        nats.password = try passwordFile.map(Self.secret)
        nats.token = try tokenFile.map(Self.secret)
        nats.tls = tls
        nats.tlsCAFile = tlsCA
        nats.tlsCertificateFile = tlsCert
        nats.tlsKeyFile = tlsKey
        var configuration = BridgeConfiguration(name: name, stream: stream, nats: nats, bus: bus.resolved())
        configuration.exports = export
        configuration.imports = imports
        guard partSize.bytes <= UInt64(Int32.max) else { throw ValidationError("--part-size \(partSize) is too large") }
        configuration.partSize = Int(partSize.bytes)
        configuration.replicas = replicas
        configuration.maxAge = maxAge > 0 ? .seconds(maxAge) : nil
        configuration.maxBytes = maxBytes.map { Int64(clamping: $0.bytes) }
        guard duplicateWindow > 0 else { throw ValidationError("--duplicate-window must be above 0") }
        configuration.duplicateWindow = .seconds(duplicateWindow)
        switch exportFrom {
        case "oldest": configuration.exportFromOldest = true
        case "now": configuration.exportFromOldest = false
        default: throw ValidationError("--export-from is oldest or now, not '\(exportFrom)'")
        }
        switch importFrom {
        case "last": configuration.importAll = false
        case "all": configuration.importAll = true
        default: throw ValidationError("--import-from is last or all, not '\(importFrom)'")
        }
        configuration.ackWait = .seconds(ackWait)
        configuration.capacity = capacity.bytes
        configuration.hold = .seconds(hold)
        configuration.readers = ReadPolicy(grants: readers.flatMap(\.grants))
        return configuration
    }

    /// A secret from a file (not from the command line, which `ps` shows), without its
    /// trailing newline.
    static func secret(_ path: String) throws -> String {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return String(text.reversed().drop { $0 == "\n" || $0 == "\r" }.reversed())
    }
}
