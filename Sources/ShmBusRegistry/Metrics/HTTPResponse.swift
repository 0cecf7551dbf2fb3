/// The metrics endpoint's side of HTTP/1.1: which answer a request head gets, and that
/// answer's bytes.
struct HTTPResponse {
    var status: String
    var contentType = "text/plain; charset=utf-8"
    var body: String
    /// False for HEAD: the headers say what GET would send, and nothing follows them.
    var sendsBody = true
    var extraHeaders: [String] = []

    enum Route {
        /// The metrics text (true: HEAD).
        case metrics(head: Bool)
        case response(HTTPResponse)
    }

    /// Routes a request head (request line and headers, no blank line). Headers are not
    /// needed: every answer closes the connection.
    static func route(_ head: String) -> Route {
        let line = head.split(separator: "\r\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            return .response(HTTPResponse(status: "400 Bad Request", body: "not an HTTP/1.x request line\n"))
        }
        let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            return .response(HTTPResponse(status: "404 Not Found", body: "the metrics are at /metrics\n"))
        }
        switch parts[0] {
        case "GET": return .metrics(head: false)
        case "HEAD": return .metrics(head: true)
        default:
            return .response(HTTPResponse(status: "405 Method Not Allowed", body: "GET or HEAD\n", extraHeaders: ["Allow: GET, HEAD"]))
        }
    }

    var bytes: [UInt8] {
        let body = Array(self.body.utf8)
        let headers = ["HTTP/1.1 \(status)", "Content-Type: \(contentType)", "Content-Length: \(body.count)", "Connection: close"]
            + extraHeaders
        return Array((headers.joined(separator: "\r\n") + "\r\n\r\n").utf8) + (sendsBody ? body : [])
    }
}
