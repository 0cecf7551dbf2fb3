import ShmBus

/// A spin budget on the command line (`--wait spin:50us`): a whole number with a unit
/// of ns, us (or µs), ms; from 0 up to `Subscriber.Wait.longestSpinBudget`. A budget
/// above that is refused rather than silently cut, so that what was typed is what runs.
struct SpinBudget: Equatable {
    let duration: Duration

    init?(argument: String) {
        let units: [(String, Int64)] = [("ns", 1), ("us", 1000), ("µs", 1000), ("ms", 1_000_000)]
        guard let (suffix, scale) = units.first(where: { argument.hasSuffix($0.0) }),
            let value = Int64(argument.dropLast(suffix.count)), value >= 0
        else { return nil }
        let (nanoseconds, overflow) = value.multipliedReportingOverflow(by: scale)
        guard !overflow else { return nil }
        let duration = Duration.nanoseconds(nanoseconds)
        guard duration <= Subscriber.Wait.longestSpinBudget else { return nil }
        self.duration = duration
    }
}
