import CShmBusLinux

/// glibc's malloc arenas, which keep what a process freed for its next allocations.
///
/// A long-running service that once held thousands of objects (a registry after an
/// owner of thousands of segments left, or after a flood of calls) frees them into the
/// arenas, where they stay resident: glibc gives memory back to the kernel only from
/// the top of the main heap, and every thread that allocated has an arena of its own.
/// ``trim()`` hands the free pages of every arena back.
public enum MallocArenas {
    /// `malloc_trim(3)` with no padding (through `shmbus_malloc_trim`): returns whether
    /// any memory went back to the kernel. Costs a walk over the arenas' free chunks,
    /// so it is for after large removals, not for every one.
    @discardableResult
    public static func trim() -> Bool {
        shmbus_malloc_trim() != 0
    }

    /// Bytes allocated and bytes free in the arenas (`mallinfo2(3)`).
    public static var usage: (inUse: Int, free: Int) {
        var inUse = 0
        var free = 0
        shmbus_malloc_usage(&inUse, &free)
        return (inUse, free)
    }
}
