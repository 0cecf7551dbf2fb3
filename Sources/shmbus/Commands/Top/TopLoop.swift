import ArgumentParser
import Foundation
import Glibc
import ShmBus

/// The live view on a terminal: one loop over everything that can happen (a refresh is
/// due, a poll answered, keys, signals), so that the terminal is touched from one place
/// and restored on every way out: `q`, SIGINT, SIGTERM, SIGHUP, and around SIGTSTP.
/// Polls run beside the loop, so keys are answered while the registry is slow.
struct TopLoop {
    let sampler: TopSampler
    var view: TopView

    enum Event: Sendable {
        case refresh
        case polled(Result<TopSnapshot, ShmBusError>)
        case keys([UInt8])
        case signal(Int32)
    }

    func run() async throws {
        var view = view
        let terminal = TopTerminal()
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        let signals = SignalHandlers([SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGTSTP, SIGCONT]) { sink.yield(.signal($0)) }
        let keys = terminal.keys { sink.yield(.keys($0)) }
        let ticks = Task {
            var next = ContinuousClock.now
            while !Task.isCancelled {
                sink.yield(.refresh)
                next += Top.refresh
                try? await Task.sleep(until: next)
            }
        }
        terminal.enter()
        defer {
            terminal.restore()
            ticks.cancel()
            keys?.cancel()
            withExtendedLifetime(signals) {}
        }

        var snapshot: TopSnapshot?
        var failure: String?
        var polling = false
        func redraw() {
            terminal.draw(Self.screen(snapshot: snapshot, failure: failure, view: view))
        }
        redraw()
        for await event in events {
            switch event {
            case .refresh:
                guard !polling else { continue }
                polling = true
                let sampler = sampler
                Task {
                    do throws(ShmBusError) {
                        sink.yield(.polled(.success(try await sampler.sample())))
                    } catch {
                        sink.yield(.polled(.failure(error)))
                    }
                }
            case .polled(let result):
                polling = false
                switch result {
                case .success(let polled): (snapshot, failure) = (polled, nil)
                case .failure(let error): failure = CommandFailure.message(for: error)
                }
                redraw()
            case .keys(let bytes):
                switch view.handle(bytes) {
                case .quit: return
                case .redraw: redraw()
                case .none: break
                }
            case .signal(SIGWINCH):
                redraw()
            case .signal(SIGTSTP):
                // Stopped with the terminal as the shell expects it; SIGCONT draws again.
                terminal.restore()
                kill(getpid(), SIGSTOP)
            case .signal(SIGCONT):
                terminal.enter()
                redraw()
            case .signal(let signal):
                throw ExitCode(128 + signal)
            }
        }
    }

    /// The lines of one screen: a title, the summary or what failed, the key help or
    /// the prefix being typed, then the table.
    static func screen(snapshot: TopSnapshot?, failure: String?, view: TopView) -> [String] {
        var now = time(nil)
        var local = tm()
        localtime_r(&now, &local)
        let clock = String(format: "%02d:%02d:%02d", local.tm_hour, local.tm_min, local.tm_sec)
        var lines = ["shmbus top · \(clock)"]
        let report = snapshot.map { TopReport($0, view: view) }
        if let failure {
            lines.append(TopReport.printable(failure))
        } else if let report {
            lines.append(report.summary)
        } else {
            lines.append("asking the registry…")
        }
        if let editing = view.editing {
            lines.append("prefix: \(editing)_   (Enter sets it, Escape drops it; empty shows every channel)")
        } else {
            lines.append("q quit · r chunks/s · b bytes/s · n name · / prefix")
        }
        lines.append("")
        if let report { lines += report.table }
        return lines
    }
}
