import CShmBusLinux

/// The seals of a memfd (`fcntl(F_ADD_SEALS)`, `memfd_create(2)`): what nobody, the
/// creator included, may do to the file any more.
public struct FileSeals: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// `F_SEAL_SEAL`: no further seals may be added.
    public static let seal = FileSeals(rawValue: shmbus_F_SEAL_SEAL)
    /// `F_SEAL_SHRINK`: the file cannot be made smaller (mappings never lose pages).
    public static let shrink = FileSeals(rawValue: shmbus_F_SEAL_SHRINK)
    /// `F_SEAL_GROW`: the file cannot be made larger.
    public static let grow = FileSeals(rawValue: shmbus_F_SEAL_GROW)
    /// `F_SEAL_WRITE`: nobody may write, not even through existing writable mappings.
    public static let write = FileSeals(rawValue: shmbus_F_SEAL_WRITE)
    /// `F_SEAL_FUTURE_WRITE` (Linux 5.1): no new writable mapping or `write(2)`; the
    /// mappings made before sealing stay writable.
    public static let futureWrite = FileSeals(rawValue: shmbus_F_SEAL_FUTURE_WRITE)

    /// The seals' C names, in a fixed order.
    public var names: [String] {
        let all: [(FileSeals, String)] = [
            (.shrink, "F_SEAL_SHRINK"), (.grow, "F_SEAL_GROW"), (.write, "F_SEAL_WRITE"),
            (.futureWrite, "F_SEAL_FUTURE_WRITE"), (.seal, "F_SEAL_SEAL"),
        ]
        return all.filter { contains($0.0) }.map(\.1)
    }

    public var description: String { names.isEmpty ? "[]" : names.joined(separator: "|") }
}
