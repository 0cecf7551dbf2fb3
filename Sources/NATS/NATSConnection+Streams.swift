import CNATS

/// What a JetStream stream holds and for how long (`jsStreamConfig`); unset limits are
/// JetStream's "unlimited".
public struct StreamConfiguration: Sendable, Hashable {
    public enum Storage: Sendable, Hashable { case file, memory }

    public var name: String
    public var subjects: [String]
    public var storage: Storage = .file
    public var replicas: Int = 1
    /// How long a message is kept; nil: until another limit removes it.
    public var maxAge: Duration?
    public var maxBytes: Int64?
    public var maxMessages: Int64?
    /// The largest message (data and headers) the stream stores.
    public var maxMessageSize: Int32?
    /// Messages kept per subject; nil: no limit.
    public var maxMessagesPerSubject: Int64?
    /// How long `Nats-Msg-Id`s are remembered to drop a repeated message.
    public var duplicateWindow: Duration = .seconds(120)

    public init(name: String, subjects: [String]) {
        self.name = name
        self.subjects = subjects
    }
}

/// What the server said about a stream.
public struct StreamInfo: Sendable, Hashable {
    public var name: String
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var replicas: Int
    public var maxAge: Duration?
}

extension NATSConnection {
    /// Creates the stream, or updates it to `configuration` if it exists.
    @discardableResult
    public func addOrUpdateStream(_ configuration: StreamConfiguration) throws(NATSError) -> StreamInfo {
        let subjects = CStringArray(configuration.subjects)
        let name = CStringArray([configuration.name])
        defer {
            subjects.free()
            name.free()
        }
        do {
            var config = jsStreamConfig()
            jsStreamConfig_Init(&config)
            config.Name = name.pointer[0]
            config.Subjects = subjects.pointer
            config.SubjectsLen = Int32(subjects.count)
            config.Storage = configuration.storage == .file ? js_FileStorage : js_MemoryStorage
            config.Replicas = Int64(configuration.replicas)
            config.MaxAge = configuration.maxAge?.natsNanoseconds ?? 0
            config.MaxBytes = configuration.maxBytes ?? -1
            config.MaxMsgs = configuration.maxMessages ?? -1
            config.MaxMsgSize = configuration.maxMessageSize ?? -1
            config.MaxMsgsPerSubject = configuration.maxMessagesPerSubject ?? -1
            config.Duplicates = configuration.duplicateWindow.natsNanoseconds
            var info: UnsafeMutablePointer<jsStreamInfo>?
            var code = jsErrCode(rawValue: 0)
            var status = js_AddStream(&info, jetStream, &config, nil, &code)
            if status != NATS_OK, code == JSStreamNameExistErr {
                code = jsErrCode(rawValue: 0)
                status = js_UpdateStream(&info, jetStream, &config, nil, &code)
            }
            try NATSError.check(status, code, "creating or updating stream '\(configuration.name)'")
            guard let info else { throw NATSError(invalid: "the server gave no stream info for '\(configuration.name)'") }
            defer { jsStreamInfo_Destroy(info) }
            return StreamInfo(info.pointee)
        }
    }

    /// The stream's state now.
    public func streamInfo(_ name: String) throws(NATSError) -> StreamInfo {
        var info: UnsafeMutablePointer<jsStreamInfo>?
        var code = jsErrCode(rawValue: 0)
        try NATSError.check(js_GetStreamInfo(&info, jetStream, name, nil, &code), code, "reading stream '\(name)'")
        guard let info else { throw NATSError(invalid: "the server gave no stream info for '\(name)'") }
        defer { jsStreamInfo_Destroy(info) }
        return StreamInfo(info.pointee)
    }

    public func deleteStream(_ name: String) throws(NATSError) {
        var code = jsErrCode(rawValue: 0)
        try NATSError.check(js_DeleteStream(jetStream, name, nil, &code), code, "deleting stream '\(name)'")
    }

    /// The newest message stored on `subject` (wildcards allowed), nil if there is none.
    public func lastMessage(stream: String, subject: String) throws(NATSError) -> NATSMessage? {
        var message: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        let status = js_GetLastMsg(&message, jetStream, stream, subject, nil, &code)
        if status == NATS_NOT_FOUND || code == JSNoMessageFoundErr { return nil }
        try NATSError.check(status, code, "reading the last message on '\(subject)' of stream '\(stream)'")
        guard let message else { return nil }
        return NATSMessage(owning: message)
    }

    /// The message with stream sequence `sequence`, nil if there is none (any more).
    public func message(stream: String, sequence: UInt64) throws(NATSError) -> NATSMessage? {
        var message: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        let status = js_GetMsg(&message, jetStream, stream, sequence, nil, &code)
        if status == NATS_NOT_FOUND || code == JSNoMessageFoundErr { return nil }
        try NATSError.check(status, code, "reading message \(sequence) of stream '\(stream)'")
        guard let message else { return nil }
        return NATSMessage(owning: message)
    }
}

extension StreamInfo {
    init(_ info: jsStreamInfo) {
        let config = info.Config?.pointee
        name = config?.Name.map { String(cString: $0) } ?? ""
        messages = info.State.Msgs
        bytes = info.State.Bytes
        firstSequence = info.State.FirstSeq
        lastSequence = info.State.LastSeq
        replicas = Int(config?.Replicas ?? 0)
        maxAge = (config?.MaxAge).flatMap { $0 > 0 ? Duration.nanoseconds($0) : nil }
    }
}
