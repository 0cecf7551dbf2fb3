import CShmBusLinux
import Dispatch
import Foundation
import Glibc

/// The terminal while `shmbus top` draws on it: keys arrive one by one without echo,
/// the table is drawn on the alternate screen with the cursor hidden, and
/// ``restore()`` puts everything back (the saved termios, the normal screen, the
/// cursor) on every way out.
///
/// Only plain ANSI/VT100 sequences are written: cursor home (`CSI H`), erase to the
/// end of the line and of the screen (`CSI K`, `CSI J`), the cursor's visibility
/// (`CSI ?25l/h`) and xterm's alternate screen (`CSI ?1049h/l`). Every terminal that
/// SSH and tmux put in front of a person speaks them (tmux and screen emulate them
/// whatever the outer terminal is), so no terminfo database is needed; `TERM=dumb`,
/// which promises none of them, gets the plain lines instead (see ``Top``).
///
/// Used from the one task that runs top's loop; not shared, so not Sendable.
final class TopTerminal {
    private var saved: termios?
    private var drawing = false

    /// Whether the terminal's keys can be read (stdin is a terminal).
    var readsKeys: Bool { isatty(STDIN_FILENO) == 1 }

    /// Raw keys (no canonical mode, no echo; signals from ^C and ^Z stay on, so they
    /// arrive as SIGINT and SIGTSTP), the alternate screen, no cursor.
    func enter() {
        var attributes = termios()
        if readsKeys, tcgetattr(STDIN_FILENO, &attributes) == 0 {
            saved = attributes
            attributes.c_lflag &= ~tcflag_t(ICANON | ECHO)
            withUnsafeMutableBytes(of: &attributes.c_cc) { cc in
                cc[Int(VMIN)] = 1
                cc[Int(VTIME)] = 0
            }
            tcsetattr(STDIN_FILENO, TCSANOW, &attributes)
        }
        write("\u{1B}[?1049h\u{1B}[?25l")
        drawing = true
    }

    /// Puts the terminal back as ``enter()`` found it; a second call does nothing.
    func restore() {
        guard drawing else { return }
        drawing = false
        write("\u{1B}[?25h\u{1B}[?1049l")
        if var attributes = saved { tcsetattr(STDIN_FILENO, TCSANOW, &attributes) }
        saved = nil
    }

    /// The window's rows and columns, 24x80 when the terminal does not say.
    static func size() -> (rows: Int, columns: Int) {
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        guard shmbus_window_size(STDOUT_FILENO, &rows, &columns) == 0, rows > 0, columns > 0 else { return (24, 80) }
        return (Int(rows), Int(columns))
    }

    /// Draws `lines` from the top left in one write, each cut to the window's width and
    /// the rest of each line and of the screen erased: no flicker, nothing left over
    /// from a longer frame or a wider window.
    func draw(_ lines: [String]) {
        let (rows, columns) = Self.size()
        var frame = "\u{1B}[H"
        for (index, line) in lines.prefix(rows).enumerated() {
            if index > 0 { frame += "\r\n" }
            frame += String(line.prefix(columns)) + "\u{1B}[K"
        }
        frame += "\u{1B}[J"
        write(frame)
    }

    /// Terminal output is best effort: a terminal that went away ends top through
    /// SIGHUP, not through a failed write.
    private func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(STDOUT_FILENO, bytes.baseAddress! + done, bytes.count - done)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { return }
                done += n
            }
        }
    }

    /// Calls `deliver` with the bytes of each read of stdin, on a dispatch queue, until
    /// it ends; nil when stdin is not a terminal.
    func keys(_ deliver: @escaping @Sendable ([UInt8]) -> Void) -> (any DispatchSourceRead)? {
        guard readsKeys else { return nil }
        let source = DispatchSource.makeReadSource(fileDescriptor: STDIN_FILENO, queue: .global())
        // The handler holds the source until it cancels it at the end of input (a cancelled
        // source releases its handler), or until top cancels it.
        source.setEventHandler {
            var buffer = [UInt8](repeating: 0, count: 256)
            let n = read(STDIN_FILENO, &buffer, buffer.count)
            if n > 0 {
                deliver(Array(buffer.prefix(n)))
            } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                source.cancel()
            }
        }
        source.resume()
        return source
    }
}
