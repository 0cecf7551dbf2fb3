// The two sides of FairLoadTests, each a process of its own (and, on the system-like
// bus, of its own Unix user): `flood` loads the daemon, `bystander` measures what it
// costs someone else. Neither shares an executor with the test or with the other.
import DBus
import Foundation
import SharedSegments
import ShmBus
import ShmBusProtocol
import Synchronization

/// Opens `connections` connections, prints "ready", and for each line on stdin sends
/// `calls` calls spread over them, all at once (every connection pipelines its share
/// without waiting for a reply), alternating `Lookup` of `key` in `channel` and
/// `ListChannels`; then prints "flooded CALLS answered N seconds S". With `publish`, it
/// first publishes `key` into `channel` itself, so that a user other than the
/// bystander floods with lookups of a channel it may read.
func flood(address: String, channel: String, key: String, connections: Int, calls: Int, publish: Bool) async throws {
    var publisher: Publisher?
    if publish {
        publisher = try await Publisher.open(channel: channel, on: .address(address))
        try publisher?.publish(Array("flood".utf8), key: key)
    }
    var clients: [RegistryClient] = []
    for _ in 0..<connections { clients.append(RegistryClient(connection: try await DBusConnection.connect(to: .address(address)))) }
    say("ready")
    while let _ = readLine() {
        let start = ContinuousClock.now
        let answered = await withTaskGroup(of: Int.self) { group in
            for call in 0..<calls {
                let client = clients[call % connections]
                group.addTask {
                    if call / connections % 2 == 0 {
                        return (try? await client.lookup(channel: channel, key: key)) == nil ? 0 : 1
                    }
                    return (try? await client.channels()) == nil ? 0 : 1
                }
            }
            var answered = 0
            for await one in group { answered += one }
            return answered
        }
        say("flooded \(calls) answered \(answered) seconds \(String(format: "%.3f", seconds(ContinuousClock.now - start)))")
    }
    await publisher?.close()
}

/// Publishes "still here" under `key` into `channel`, prints "ready", then every 2 ms
/// until a line arrives on stdin takes one sample: a timed `Lookup` of that key, every
/// `registrationEvery`th sample a timed `RegisterSegment` of a fresh segment of a channel
/// of its own (made before the clock starts; unregistered again untimed), and a timed
/// `GetNameOwner` of the registry's name, which the bus answers itself: what the bus
/// alone makes a caller wait, and a timed `Peer.Ping` of the registry, which its
/// connection's loop answers itself: the bus both ways and the registry's socket and
/// loop, without its scheduler or handlers. Then prints "bystander samples N", the p50,
/// p99 and max in milliseconds of the lookups, the registrations, the bus's answers and
/// the pings, and "wrong N" for lookups that did not find its chunk. (Lookups often, registrations less: a
/// p99 needs some thousand samples, and a light client asks one thing at a time.)
func bystander(address: String, channel: String, key: String, registrationEvery: Int = 8) async throws {
    let publisher = try await Publisher.open(channel: channel, on: .address(address))
    try publisher.publish(Array("still here".utf8), key: key)
    let client = RegistryClient(connection: try await DBusConnection.connect(to: .address(address)))
    let stop = Atomic(false)
    Thread.detachNewThread {
        _ = readLine()
        stop.store(true, ordering: .releasing)
    }
    say("ready")
    var lookups: [Duration] = []
    var registrations: [Duration] = []
    var busAnswers: [Duration] = []
    var pings: [Duration] = []
    var wrong = 0
    while !stop.load(ordering: .acquiring) {
        var start = ContinuousClock.now
        let found = try await client.lookup(channel: channel, key: key)
        lookups.append(ContinuousClock.now - start)
        if found.length != 10 { wrong += 1 }
        if lookups.count % registrationEvery == 1 {
            let writer = try ChannelWriter(channel: "\(channel)-\(registrations.count)", capacity: 16 << 10)
            start = ContinuousClock.now
            let (segment, _) = try await client.registerSegment(channel: writer.channel, fd: writer.current.fileDescriptor)
            registrations.append(ContinuousClock.now - start)
            try await client.unregisterSegment(segment)
        }
        start = ContinuousClock.now
        _ = try await client.connection.nameOwner(of: ShmBusProtocol.registryName)
        busAnswers.append(ContinuousClock.now - start)
        start = ContinuousClock.now
        try await client.connection.ping(ShmBusProtocol.registryName)
        pings.append(ContinuousClock.now - start)
        try await Task.sleep(for: .milliseconds(2))
    }
    func figures(_ name: String, _ samples: [Duration]) -> String {
        let sorted = samples.sorted()
        func at(_ fraction: Double) -> String {
            sorted.isEmpty ? "none" : String(format: "%.1f", seconds(sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]) * 1000)
        }
        return "\(name)_p50 \(at(0.5)) \(name)_p99 \(at(0.99)) \(name)_max \(at(1))"
    }
    say("bystander samples \(lookups.count) \(figures("lookup", lookups)) \(figures("register", registrations)) \(figures("bus", busAnswers)) \(figures("ping", pings)) wrong \(wrong)")
    await publisher.close()
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
