/// Memory given back, like ``MallocArenas``: the registry's tables and a connection's
/// export tree once held thousands of entries and kept their storage after they went.
extension Dictionary {
    /// Moves the entries to storage sized for them when they fill less than an eighth
    /// of a large one: a dictionary keeps its capacity when entries go, and the
    /// registry's held the storage of thousands of segments after they were gone.
    /// Rebuilt only after the count fell eightfold, so the copying costs O(1) per
    /// removal, amortized.
    public mutating func shrinkIfSparse() {
        guard capacity > 1024, count < capacity / 8 else { return }
        var compact = Self(minimumCapacity: count)
        for (key, value) in self { compact[key] = value }
        self = compact
    }
}
