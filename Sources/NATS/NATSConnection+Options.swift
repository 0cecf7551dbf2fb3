import CNATS
import Glibc

extension NATSConnection {
    /// How to reach and authenticate to the servers; passed through to `natsOptions`.
    public struct Options: Sendable {
        /// Server URLs (`nats://host:4222`, `tls://host:4222`); NATS.c picks among them
        /// and learns the rest of a cluster from the server.
        public var servers: [String]
        /// The client's name, shown by the server's monitoring.
        public var name: String?
        /// How long connecting to one server may take.
        public var connectTimeout: Duration = .seconds(5)
        /// How long JetStream API calls and publish acknowledgements may take.
        public var requestTimeout: Duration = .seconds(10)
        /// Reconnection: attempts per server (-1: forever) and the wait between them.
        public var maxReconnect: Int32 = -1
        public var reconnectWait: Duration = .milliseconds(250)
        /// Retry the first connection in the background instead of failing at once.
        public var retryOnFailedConnect = false
        /// A `.creds` file (user JWT and NKey seed).
        public var credentialsFile: String?
        public var user: String?
        public var password: String?
        public var token: String?
        /// Require TLS, and the files that configure it (PEM).
        public var tls = false
        public var tlsCAFile: String?
        public var tlsCertificateFile: String?
        public var tlsKeyFile: String?

        public init(servers: [String]) {
            self.servers = servers
        }
    }

    /// A `natsOptions` holding `options`; the caller destroys it.
    static func makeOptions(_ options: Options) throws(NATSError) -> OpaquePointer {
        var made: OpaquePointer?
        try NATSError.check(natsOptions_Create(&made), "creating connection options")
        guard let opts = made else { throw NATSError(invalid: "natsOptions_Create gave nothing") }
        do throws(NATSError) {
            try apply(options, to: opts)
        } catch {
            natsOptions_Destroy(opts)
            throw error
        }
        return opts
    }

    private static func apply(_ options: Options, to opts: OpaquePointer) throws(NATSError) {
        guard !options.servers.isEmpty else { throw NATSError(invalid: "no NATS server URL given") }
        let servers = CStringArray(options.servers)
        defer { servers.free() }
        try NATSError.check(
            natsOptions_SetServers(opts, servers.pointer, Int32(options.servers.count)), "setting servers \(options.servers)")
        if let name = options.name { try NATSError.check(natsOptions_SetName(opts, name), "setting the client name") }
        try NATSError.check(natsOptions_SetTimeout(opts, options.connectTimeout.natsMilliseconds), "setting the connect timeout")
        try NATSError.check(natsOptions_SetMaxReconnect(opts, options.maxReconnect), "setting reconnection attempts")
        try NATSError.check(natsOptions_SetReconnectWait(opts, options.reconnectWait.natsMilliseconds), "setting the reconnect wait")
        if options.retryOnFailedConnect {
            // No callback: the first connection is retried like a reconnection.
            try NATSError.check(natsOptions_SetRetryOnFailedConnect(opts, true, nil, nil), "setting retry on failed connect")
        }
        if let file = options.credentialsFile {
            try NATSError.check(natsOptions_SetUserCredentialsFromFiles(opts, file, nil), "reading credentials from \(file)")
        }
        if let user = options.user {
            try NATSError.check(natsOptions_SetUserInfo(opts, user, options.password), "setting user and password")
        }
        if let token = options.token { try NATSError.check(natsOptions_SetToken(opts, token), "setting the token") }
        if options.tls { try NATSError.check(natsOptions_SetSecure(opts, true), "requiring TLS") }
        if let ca = options.tlsCAFile {
            try NATSError.check(natsOptions_LoadCATrustedCertificates(opts, ca), "loading the CA certificates \(ca)")
        }
        if let certificate = options.tlsCertificateFile {
            guard let key = options.tlsKeyFile else { throw NATSError(invalid: "a TLS certificate needs its key file") }
            try NATSError.check(
                natsOptions_LoadCertificatesChain(opts, certificate, key), "loading the certificate \(certificate) and key \(key)")
        }
    }
}

/// C strings that live until ``free()``, for NATS.c's `const char **` arguments.
struct CStringArray {
    let pointer: UnsafeMutablePointer<UnsafePointer<CChar>?>
    let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointer = .allocate(capacity: max(1, strings.count))
        for (index, string) in strings.enumerated() { pointer[index] = UnsafePointer(strdup(string)) }
    }

    func free() {
        for index in 0..<count { Glibc.free(UnsafeMutableRawPointer(mutating: pointer[index])) }
        pointer.deallocate()
    }
}

extension Duration {
    /// Milliseconds, as NATS.c counts most times (at least 1 for a positive duration).
    var natsMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return self > .zero ? max(1, milliseconds) : 0
    }

    /// Nanoseconds, as JetStream's configurations count times.
    var natsNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
