import Glibc
import Locking
import ShmBusSystem

/// The part of a connection that any thread may touch: a queue of commands for the
/// loop thread and the eventfd that wakes it.
///
/// Every libdbus call on a connection happens on its loop thread. Other threads never
/// call libdbus for the connection; they submit a command, which the loop thread runs
/// between two polls (see docs/ARCHITECTURE.md, "Threading").
final class LoopCore: Sendable {
    typealias Command = @Sendable (ConnectionLoop) -> Void

    private struct Queue {
        var commands: [Command] = []
        var closed = false
    }

    private let queue = Lock(Queue())
    /// An eventfd the loop polls; signalled when the queue goes from empty to non-empty.
    private let wake: EventCounter
    /// Where incoming method calls wait for a handler (see ``DBusConnection/CallScheduling``).
    let scheduler: CallScheduler

    init(scheduling: DBusConnection.CallScheduling = .init()) throws(DBusError) {
        scheduler = CallScheduler(limits: scheduling)
        do {
            wake = try EventCounter()
        } catch {
            throw .failed("\(error)")
        }
    }

    /// The eventfd's number, for the loop's `poll` set.
    var wakeFD: Int32 { wake.fileDescriptor.rawValue }

    /// Queues `command` for the loop thread. Returns false when the connection is
    /// closed; the command is then dropped and the caller reports the disconnection.
    @discardableResult
    func submit(_ command: @escaping Command) -> Bool {
        let (accepted, wake) = queue.withLock { queue -> (Bool, Bool) in
            guard !queue.closed else { return (false, false) }
            queue.commands.append(command)
            return (true, queue.commands.count == 1)
        }
        if wake { signalWake() }
        return accepted
    }

    /// Wakes the loop thread out of `poll`.
    func signalWake() {
        wake.signal()
    }

    /// Resets the eventfd; called by the loop when it wakes.
    func drainWake() {
        wake.drain()
    }

    /// Takes every queued command (loop thread).
    func takeCommands() -> [Command] {
        queue.withLock { queue in
            let commands = queue.commands
            queue.commands.removeAll(keepingCapacity: true)
            return commands
        }
    }

    /// Refuses further commands and returns those still queued (loop thread, at shutdown).
    func close() -> [Command] {
        queue.withLock { queue in
            queue.closed = true
            let commands = queue.commands
            queue.commands = []
            return commands
        }
    }

    var isClosed: Bool { queue.withLock { $0.closed } }
}

/// The reply a task is waiting for. Exactly one of reply, timeout, disconnection or
/// cancellation resumes the task, whichever comes first.
final class PendingReply: Sendable {
    private enum State {
        case initial
        case waiting(CheckedContinuation<DBusMessage, any Error>)
        case cancelled
        case done
    }

    private let state = Lock(State.initial)

    /// Installs the continuation; if the task was cancelled before, resumes it at once.
    func install(_ continuation: CheckedContinuation<DBusMessage, any Error>) {
        let cancelled = state.withLock { state -> Bool in
            if case .cancelled = state {
                state = .done
                return true
            }
            state = .waiting(continuation)
            return false
        }
        if cancelled { continuation.resume(throwing: CancellationError()) }
    }

    /// Whether a task still waits (loop thread: a cancelled call is not sent).
    var isWaiting: Bool {
        state.withLock { if case .waiting = $0 { true } else { false } }
    }

    func complete(_ result: Result<DBusMessage, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<DBusMessage, any Error>? in
            guard case .waiting(let c) = state else { return nil }
            state = .done
            return c
        }
        continuation?.resume(with: result)
    }

    func cancel() {
        let continuation = state.withLock { state -> CheckedContinuation<DBusMessage, any Error>? in
            switch state {
            case .initial:
                state = .cancelled
                return nil
            case .waiting(let c):
                state = .done
                return c
            case .cancelled, .done:
                return nil
            }
        }
        continuation?.resume(throwing: CancellationError())
    }
}
