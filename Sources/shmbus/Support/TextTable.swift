/// A plain text table with left-aligned columns (numbers right-aligned where asked),
/// for terminal output.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []
    /// The columns whose cells are right-aligned (counts and rates read best so).
    var rightAligned: Set<Int> = []

    init(_ headers: String...) { self.headers = headers }

    mutating func add(_ cells: String...) { rows.append(cells) }

    mutating func add(_ cells: [String]) { rows.append(cells) }

    var lines: [String] {
        let all = [headers] + rows
        var widths = [Int](repeating: 0, count: headers.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        return all.map { row in
            row.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: i < widths.count ? max(0, widths[i] - cell.count) : 0)
                if rightAligned.contains(i) { return pad + cell }
                return i == row.count - 1 ? cell : cell + pad
            }.joined(separator: "  ")
        }
    }

    var rendered: String { lines.joined(separator: "\n") }
}
