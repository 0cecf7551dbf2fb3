import SharedSegments

/// Following the channel from segment to segment: a retired segment's successor, the
/// channel's current segment after it moved (a new publisher, a registry that came
/// back), and the move itself.
extension Subscriber {
    /// Moves to the successor of a retired segment (see ``SegmentLocator``). When the
    /// publisher has left and taken the successor with it (it was not persistent),
    /// there is nothing to follow: the segment is marked abandoned, reads treat it as
    /// read to the end, and the departure is reported.
    func follow(_ successor: SegmentID) async throws {
        let (mine, generation) = reading.withLock { ($0.cursor.segment.name, $0.cursor.segment.header.generation) }
        // Reused memory this subscriber has mapped already: nothing to ask for.
        if let reader = locator.cachedSuccessor(successor, after: generation, writer: status.withLock({ $0.owner })) {
            move(to: reader, doorbell: nil)
            return
        }
        let status = self.status
        let opened = try await locator.successor(
            successor, of: mine, generation: generation, owner: { status.withLock { $0.owner } },
            passed: { [weak self] in self?.isReadOrPassed($0) ?? false },
            ownerGone: { status.withLock { $0.departed != nil && $0.departed == $0.owner } })
        guard let opened else {
            status.withLock {
                $0.abandoned = successor.name
                $0.statistics.successorsLost += 1
            }
            logger.info("the successor left with its publisher", metadata: ["segment": "\(successor.name)", "channel": "\(channel)"])
            return
        }
        move(to: opened.reader, doorbell: opened.doorbell)
    }

    func moveIfChannelMoved() async throws -> Bool {
        let check = status.withLock { state -> Bool in
            defer { state.channelMayHaveMoved = false }
            return state.channelMayHaveMoved
        }
        guard check else { return false }
        // (A Result, not `catch … where`: Swift 6.3.1 crashes compiling a typed
        // `catch where` in this async method.)
        let looked: Result<OpenedSegment?, ShmBusError>
        do {
            looked = .success(try await openCurrentIfMoved())
        } catch {
            looked = .failure(error)
        }
        let opened: OpenedSegment?
        switch looked {
        case .success(let found):
            opened = found
        case .failure(let error) where error.code == .registryUnavailable:
            // Look again once it is back (its start is announced, and the ticker wakes
            // us meanwhile); the segment being read stays readable.
            status.withLock { $0.channelMayHaveMoved = true }
            return false
        case .failure(let error):
            throw error
        }
        guard let opened else { return false }
        // Read the rest of the old segment before moving (it is final: nobody appends).
        if reading.withLock({ $0.cursor.hasPending() }) {
            status.withLock { $0.channelMayHaveMoved = true }
            return true
        }
        move(to: opened.reader, doorbell: opened.doorbell)
        return true
    }

    /// The channel's current segment, opened, when it is neither the one being read
    /// nor one the subscriber has passed already: a publisher that reuses memory
    /// retires a segment before the registry has its successor, and a subscriber that
    /// followed through its own mappings is ahead of the registry for a while.
    /// (Moving back would read that older segment as a new history, from its start,
    /// and deliver its chunks again.)
    private func openCurrentIfMoved() async throws(ShmBusError) -> OpenedSegment? {
        guard let current = try await locator.current()?.segment, !isReadOrPassed(current) else { return nil }
        return try await locator.openIfRegistered(current)
    }

    /// Whether `segment` is the one being read or one read before.
    func isReadOrPassed(_ segment: String) -> Bool {
        reading.withLock { $0.cursor.segment.name == segment || $0.passed.contains(segment) }
    }

    func move(to reader: SegmentReader, doorbell: Doorbell?) {
        reading.withLock { state in
            state.passed.append(state.cursor.segment.name)
            if state.passed.count > Self.passedSegmentsKept { state.passed.removeFirst() }
            let last = state.cursor.lastSequence ?? 0
            // A segment that continues this history (a successor after a collection,
            // or a new publisher taking over persistent segments) accepted appends only
            // after every sequence already read: its base is at least `last`. One whose
            // base is below is a new history whose sequences started again (the old
            // publisher's segments were removed with it): read it from its start.
            // (Whatever its length: judging by its last sequence, as before, skipped a
            // new history that had reached the old one's count.)
            if reader.header.baseSequence < last, let fresh = try? ChannelCursor(segment: reader, start: .oldest) {
                state.cursor = fresh
            } else {
                state.cursor.move(to: reader)
            }
            if let doorbell { state.doorbell = doorbell }
        }
        status.withLock {
            $0.statistics.segmentsFollowed += 1
            $0.abandoned = nil
        }
    }
}
