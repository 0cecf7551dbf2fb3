import Foundation
@testable import SharedSegments
import Testing

/// The spin before the sleep (`Subscriber.Wait.spin`): how it ends, and how its
/// pacing keeps a writer from making a reader spin without end. Behaviour only: no
/// assertion here depends on how fast this machine is.
@Suite struct SpinPacingTests {
    @Test func theBudgetIsClampedToItsLongest() {
        #expect(SpinPacing(budget: .seconds(5)).budget == SpinPacing.longestBudget)
        #expect(SpinPacing(budget: .milliseconds(-1)).budget == .zero)
        #expect(!SpinPacing(budget: .zero).allowsSpin(at: 0), "a zero budget never spins")
    }

    @Test func afterASpinThatRanOutTheNextWaitsAsLongAsItTook() {
        var pacing = SpinPacing(budget: .microseconds(50))
        #expect(pacing.allowsSpin(at: 1_000))
        // A spin from 1,000 ns to 51,000 ns found nothing: not again before 101,000 ns.
        pacing.ranOut(from: 1_000, to: 51_000)
        #expect(!pacing.allowsSpin(at: 51_000))
        #expect(!pacing.allowsSpin(at: 100_999))
        #expect(pacing.allowsSpin(at: 101_000))
    }

    @Test func aSpinEndsWithWhatIsCommittedMeanwhile() throws {
        let writer = try ChannelWriter(channel: "test/spin", capacity: 1 << 20)
        let cursor = try ChannelCursor(segment: try openReader(writer.current), start: .now)
        // Something already committed: found at once, whatever the pacing.
        try Array("first".utf8).withUnsafeBytes { _ = try writer.append($0) }
        var pacing = SpinPacing(budget: SpinPacing.longestBudget)
        #expect(cursor.spin(&pacing) == .found)
        #expect(try drain(cursor).chunks.count == 1)
        // Nothing new: the spin runs out its budget.
        var short = SpinPacing(budget: .microseconds(100))
        #expect(cursor.spin(&short) == .ranOut)
        try Array("second".utf8).withUnsafeBytes { _ = try writer.append($0) }
        // Found at once even while the pacing would refuse a spin.
        #expect(cursor.spin(&short) == .found)
        #expect(try drain(cursor).chunks.map(\.bytes) == [Array("second".utf8)])
    }

    @Test func aSpinWithNothingCommittedRunsOutThenIsNotAllowedAtOnce() throws {
        let writer = try ChannelWriter(channel: "test/spin-out", capacity: 1 << 20)
        let cursor = try ChannelCursor(segment: try openReader(writer.current), start: .now)
        var pacing = SpinPacing(budget: .microseconds(200))
        let start = ContinuousClock.now
        #expect(cursor.spin(&pacing) == .ranOut)
        #expect(ContinuousClock.now - start >= .microseconds(200), "it spun its whole budget")
        #expect(cursor.spin(&pacing) == .notAllowed, "a spin right after one that ran out is refused")
    }

    @Test func aRetiredSegmentEndsTheSpin() throws {
        let writer = try ChannelWriter(channel: "test/spin-retire", capacity: 64 << 10)
        let cursor = try ChannelCursor(segment: try openReader(writer.current), start: .now)
        let chunk = [UInt8](repeating: 3, count: 4000)
        // Fill the segment until the writer collects into a new one.
        var appended = try chunk.withUnsafeBytes { try writer.append($0) }
        while appended.rotation == nil { appended = try chunk.withUnsafeBytes { try writer.append($0) } }
        _ = try drain(cursor)
        var pacing = SpinPacing(budget: .milliseconds(50))
        // Retired after the spin began or before: either way the spin ends with it.
        if let rotation = appended.rotation { writer.retire(rotation) }
        #expect(cursor.spin(&pacing) == .found)
    }
}
