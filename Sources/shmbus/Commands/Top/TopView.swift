import ArgumentParser
import Foundation

/// How top orders its channels: `rate` by chunks per second, `bytes` by bytes per
/// second (both highest first), `name` alphabetically. Ties go by name.
enum TopSort: String, CaseIterable, ExpressibleByArgument, Encodable, Sendable {
    case rate, bytes, name
}

/// What the person at the terminal chose: the order, the channel-name prefix, and the
/// prefix being typed after `/`.
struct TopView: Sendable {
    var sort: TopSort
    var prefix: String
    /// The prefix typed so far after `/`, until Enter sets it or Escape drops it.
    var editing: String?

    enum Action: Equatable { case redraw, quit, none }

    /// The channels of `snapshot` this view shows, in its order.
    func rows(of snapshot: TopSnapshot) -> [TopChannel] {
        let shown = snapshot.channels.filter { $0.name.hasPrefix(prefix) }
        func byName(_ a: TopChannel, _ b: TopChannel) -> Bool { a.name < b.name }
        switch sort {
        case .name:
            return shown.sorted(by: byName)
        case .rate:
            return shown.sorted { ($0.chunkRate ?? -1, $1.name) > ($1.chunkRate ?? -1, $0.name) }
        case .bytes:
            return shown.sorted { ($0.byteRate ?? -1, $1.name) > ($1.byteRate ?? -1, $0.name) }
        }
    }

    /// Handles the bytes one read from the terminal returned: `q` quits, `r`, `b`, `n`
    /// sort, `/` starts a prefix (channel-name characters, Backspace, Enter sets it,
    /// Escape drops it). Escape sequences (arrow and function keys) are skipped whole.
    mutating func handle(_ bytes: [UInt8]) -> Action {
        var action = Action.none
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == 0x1B, index < bytes.count, bytes[index] == UInt8(ascii: "[") || bytes[index] == UInt8(ascii: "O") {
                // CSI or SS3: parameters, then one final byte in 0x40...0x7E.
                index += 1
                while index < bytes.count, !(0x40...0x7E).contains(bytes[index]) { index += 1 }
                index += 1
                continue
            }
            if editing != nil {
                action = .redraw
                switch byte {
                case 0x0D, 0x0A:
                    prefix = editing ?? ""
                    editing = nil
                case 0x1B:
                    editing = nil
                case 0x7F, 0x08:
                    if editing?.isEmpty == false { editing?.removeLast() }
                default:
                    if Self.isChannelCharacter(byte), (editing?.utf8.count ?? 0) < 200 {
                        editing?.append(Character(UnicodeScalar(byte)))
                    }
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "q"), UInt8(ascii: "Q"): return .quit
            case UInt8(ascii: "r"): sort = .rate; action = .redraw
            case UInt8(ascii: "b"): sort = .bytes; action = .redraw
            case UInt8(ascii: "n"): sort = .name; action = .redraw
            case UInt8(ascii: "/"): editing = ""; action = .redraw
            default: break
            }
        }
        return action
    }

    /// The characters of channel names (docs/FORMAT.md): nothing else can match.
    static func isChannelCharacter(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte)
            || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "/")
    }
}
