import DBus
import Locking
import SharedSegments

/// How a subscriber learns that there is something to read: `Committed` signals from
/// the channel's owner (checked on the loop thread), the registry's announcements, a
/// periodic look, and the owner's departure from the bus.
extension Subscriber {
    // MARK: Wake-ups

    func spawn(_ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        tasks.withLock { $0.append(task) }
    }

    /// A `Committed` signal arrived (on the connection's loop thread). Only the
    /// channel's registered owner may announce commits; anything else is counted and
    /// ignored.
    func committed(by sender: String?) {
        let genuine = status.withLock { state -> Bool in
            guard let owner = state.owner, sender == owner else {
                state.statistics.ignoredSignals += 1
                return false
            }
            state.statistics.signals += 1
            return true
        }
        if genuine { wake.yield() }
    }

    /// About to wait for a `Committed` signal, having read everything: says so in the
    /// publisher's doorbell, so that its next commit is announced at once rather than
    /// coalesced (see ``CommitNotifier``); then looks once more, for a commit made
    /// before the publisher could see the flag. Returns whether there is something to
    /// read now.
    func expectSignal() -> Bool {
        reading.withLock { state in
            guard let doorbell = state.doorbell else { return false }
            doorbell.expectSignal()
            return state.cursor.hasPending()
        }
    }

    func listen(to events: AsyncThrowingStream<RegistryClient.Event, any Error>) {
        spawn { [weak self] in
            do {
                for try await event in events {
                    guard let self else { return }
                    switch event {
                    case .segmentAdded(_, let channel, _, _) where channel == self.channel:
                        await self.refreshOwner()
                        self.status.withLock { $0.channelMayHaveMoved = true }
                        self.wake.yield()
                    case .segmentReplaced(_, _, let channel, _) where channel == self.channel:
                        self.wake.yield()
                    case .registryStarted:
                        await self.refreshOwner()
                        self.wake.yield()
                    default:
                        continue
                    }
                }
            } catch {}
        }
    }

    func refreshOwner() async {
        guard let found = try? await locator.current() else { return }
        status.withLock { $0.owner = found.owner.isEmpty ? nil : found.owner }
        await watchOwner()
    }

    /// A periodic look, so that a lost or never-sent signal delays, never stalls.
    func startTicker() {
        let interval: Duration
        if case .poll(let every) = options.wait { interval = every } else { interval = .milliseconds(500) }
        spawn { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                self?.wake.yield()
            }
        }
    }

    /// Watches the current owner's unique name: when it leaves the bus, the reader is
    /// woken to report ``Event/publisherLeft(owner:)`` once it has read everything.
    func watchOwner() async {
        let owner = status.withLock { state -> String? in
            guard let owner = state.owner, state.watched != owner else { return nil }
            state.watched = owner
            return owner
        }
        guard let owner else { return }
        let changes: AsyncThrowingCompactMapSequence<DBusSignalStream, DBusConnection.NameOwnerChange>
        let present: String?
        do {
            changes = try await connection.nameOwnerChanges(for: owner)
            // The owner may have left between being named and the match rule: ask once.
            // Only the bus's "no owner" counts as gone; a slow or closing bus does not.
            present = try await connection.nameOwner(of: owner)
        } catch {
            // Not watched after all: let a later refresh try again.
            status.withLock { if $0.watched == owner { $0.watched = nil } }
            return
        }
        spawn { [weak self] in
            if present != nil {
                do {
                    var departures = changes.filter { $0.newOwner == nil }.makeAsyncIterator()
                    guard try await departures.next() != nil else { return }
                } catch {
                    return
                }
            }
            guard let self else { return }
            // Recorded even if a new owner was named meanwhile: this one did leave.
            self.status.withLock {
                $0.ownerLeft = owner
                $0.departed = owner
            }
            self.wake.yield()
        }
    }

    /// The departure to report now: the owner that left, once a read that began after
    /// its departure was seen has found nothing more. A commit can land between a read
    /// that found nothing and the departure (the publisher's last chunk, then its
    /// exit), so the first sighting only sets `readSinceSeen` and asks for one more
    /// read; nothing can be committed after the owner is gone, so an empty read after
    /// that means everything was delivered.
    func departure(readSinceSeen: inout Bool) -> String? {
        let wasRead = readSinceSeen
        let owner = status.withLock { state -> String?? in
            guard let owner = state.ownerLeft else { return .none }
            guard wasRead else { return .some(nil) }
            state.ownerLeft = nil
            return .some(owner)
        }
        switch owner {
        case .none:
            readSinceSeen = false
            return nil
        case .some(nil):
            readSinceSeen = true
            return nil
        case .some(let owner?):
            readSinceSeen = false
            return owner
        }
    }
}
