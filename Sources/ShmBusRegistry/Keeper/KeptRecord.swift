import DBus
import Glibc
import SharedSegments
import ShmBusPolicy
import ShmBusProtocol
import ShmBusSystem

/// The rules a kept record follows: what a registry writes, checked both where the
/// keeper accepts one and where a registry adopts one. Neither side trusts the bus
/// further than the Unix user; a record that breaks them was not written by a
/// registry, and inside a registry an unchecked value can trap it (a ttl beyond
/// `UInt64` microseconds) or leave a segment no departure ever ends (an owner that is a
/// well-known name), at every start-up, since the keeper would hand it back each time.
extension Keeper1.Record {
    /// The longest ttl a registry accepts at registration (`RegisterSegment`).
    static let maximumTTL: UInt64 = 10 * 365 * 86_400

    /// What is wrong with this record, nil when nothing is.
    var problem: String? {
        guard let segment, SegmentID(name: segment)?.name == segment else {
            return "the record's 'segment' must be a segment name (32 lowercase hex digits)"
        }
        guard let channel else { return "the record of \(segment) has no 'channel'" }
        if let problem = ChannelName.problem(with: channel) {
            return "the record of \(segment) has an invalid channel '\(channel.prefix(220))': \(problem)"
        }
        if let owner, !owner.isEmpty {
            // A unique name: the registry follows only those leaving the bus.
            guard owner.hasPrefix(":"), (try? DBusName.validateBusName(owner)) != nil else {
                return "the record of \(segment) names an owner '\(owner.prefix(255))' that is not a unique bus name"
            }
        }
        if let replaces, !replaces.isEmpty, SegmentID(name: replaces)?.name != replaces || replaces == segment {
            return "the record of \(segment) replaces '\(replaces.prefix(64))', not another segment's name"
        }
        if let app = ownerApp, !FlatpakInfo.isValidAppID(app) {
            return "the record of \(segment) names an owner app '\(app.prefix(255))' that is not a valid app ID"
        }
        if let readers {
            do {
                _ = try ReadPolicy(wire: readers)
            } catch {
                return "the record of \(segment) has readers a registry would not accept: \(error.message)"
            }
        }
        if let ttl, ttl > Self.maximumTTL {
            return "the record of \(segment) has a ttl of \(ttl) s, more than a registry accepts (\(Self.maximumTTL) s)"
        }
        return nil
    }
}

extension KeptSegment {
    /// What is wrong with the descriptors, nil when nothing is: the segment must be a
    /// sealed memfd opened read-only (the registry hands over its O_RDONLY reopen, so
    /// whoever takes it back can never write through it), the doorbell a memfd of
    /// fixed size. Checked with fcntl and readlink only: the keeper never maps them.
    var descriptorProblem: String? {
        do {
            try Memfd.checkSealed(fd, required: Memfd.segmentSeals)
        } catch {
            return "the segment's descriptor: \(error.message)"
        }
        let mode = fd.withRawValue { fcntl($0, F_GETFL) }
        guard mode >= 0, mode & O_ACCMODE == O_RDONLY else {
            return "the segment's descriptor is open for writing; keep a read-only reopen"
        }
        if let doorbell = record.doorbell {
            do {
                try Memfd.checkSealed(doorbell, required: FileSeals([.shrink, .grow]).rawValue)
            } catch {
                return "the doorbell: \(error.message)"
            }
        }
        return nil
    }
}
