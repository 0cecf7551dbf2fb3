import DBus
import Locking
import SharedSegments

/// A subscriber's lease page (docs/FORMAT.md, "Reused memory") and the publishers it
/// has been handed to: made the first time a segment needs it, and registered with
/// each writer (`Publisher1.Lease`) before the subscriber reads that writer's first
/// version 2 segment, so that no hold is ever taken on a page its writer does not see.
final class SubscriberLease: Sendable {
    private let state = Lock(State())
    /// Kept alive with the page (and so with every chunk read through it).
    private let anchor: (any AnyObject & Sendable)?

    private struct State {
        var page: ReadLease?
        /// Unique names of the publishers that have the page.
        var writers: Set<String> = []
    }

    /// - Parameter anchor: the connection the page is registered through (a
    ///   publisher forgets the lease when it leaves the bus).
    init(anchor: (any AnyObject & Sendable)?) {
        self.anchor = anchor
    }

    /// The page, if it was made (and so handed to some writer).
    var page: ReadLease? { state.withLock { $0.page } }

    /// The page, if `writer` has it already.
    func page(registeredWith writer: String) -> ReadLease? {
        state.withLock { $0.writers.contains(writer) ? $0.page : nil }
    }

    /// Hands the page to `writer` and returns it. Once per writer as a rule; two
    /// readers racing to the same writer's first segment may both hand it over, and
    /// the publisher then keeps the page twice (one of its 64), which costs nothing else.
    func register(with writer: String, through sources: any SegmentSources) async throws(ShmBusError) -> ReadLease {
        let page: ReadLease
        do throws(SegmentError) {
            page = try state.withLock { (state) throws(SegmentError) -> ReadLease in
                if let page = state.page { return page }
                let made = try ReadLease(keeping: anchor)
                state.page = made
                return made
            }
        } catch {
            throw ShmBusError(error, context: "lease page")
        }
        try await sources.lease(page.fileDescriptor, atPublisher: writer)
        state.withLock { _ = $0.writers.insert(writer) }
        return page
    }
}
