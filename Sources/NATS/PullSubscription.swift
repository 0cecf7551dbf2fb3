import CNATS

/// A durable pull consumer's configuration (`jsConsumerConfig`), as far as the bridge
/// sets it.
public struct ConsumerConfiguration: Sendable, Hashable {
    public enum DeliverPolicy: Sendable, Hashable {
        case all
        /// The newest message of each subject the filter matches, then all new ones.
        case lastPerSubject
        case new
        /// From this stream sequence on.
        case startSequence(UInt64)
    }
    public enum AckPolicy: Sendable, Hashable {
        case explicit
        /// Acknowledging a message acknowledges every earlier one of the consumer.
        case all
    }

    public var durable: String
    public var filterSubject: String
    public var deliverPolicy: DeliverPolicy = .all
    public var ackPolicy: AckPolicy = .explicit
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    public var ackWait: Duration = .seconds(30)
    /// Delivered and unacknowledged messages the server allows at once.
    public var maxAckPending: Int64 = 1000

    public init(durable: String, filterSubject: String) {
        self.durable = durable
        self.filterSubject = filterSubject
    }
}

/// What the server says of a durable consumer.
public struct ConsumerState: Sendable, Hashable {
    /// The stream sequence of the last message delivered, and of the acknowledgement
    /// floor (every message up to it is acknowledged).
    public var deliveredStreamSequence: UInt64
    public var ackFloorStreamSequence: UInt64
    /// Delivered and not acknowledged.
    public var ackPending: Int64
    /// Not delivered yet.
    public var pending: UInt64
    public var filterSubject: String
    public var ackWait: Duration
}

/// A pull subscription on a durable consumer, owned; made by
/// ``NATSConnection/pullSubscribe(stream:consumer:)``. Destroying it keeps the
/// consumer, and its acknowledged position, on the server: a later subscription with
/// the same durable name continues there.
///
/// Not `Sendable`: one thread fetches (see ``NATSConnection``'s threads).
public final class PullSubscription {
    let subscription: OpaquePointer
    /// The connection, kept alive for as long as the subscription is.
    public let connection: NATSConnection
    public let consumer: ConsumerConfiguration

    init(subscription: OpaquePointer, connection: NATSConnection, consumer: ConsumerConfiguration) {
        self.subscription = subscription
        self.connection = connection
        self.consumer = consumer
    }

    deinit {
        // Not natsSubscription_Unsubscribe: on a durable the library made, that would
        // delete the consumer, and the position with it.
        natsSubscription_Destroy(subscription)
    }

    /// Up to `batch` messages, waiting at most `timeout` for the first; an empty array
    /// when none came in time.
    public func fetch(batch: Int, timeout: Duration) throws(NATSError) -> [NATSMessage] {
        var list = natsMsgList()
        var code = jsErrCode(rawValue: 0)
        let status = natsSubscription_Fetch(&list, subscription, Int32(batch), timeout.natsMilliseconds, &code)
        defer { natsMsgList_Destroy(&list) }
        var messages: [NATSMessage] = []
        if let msgs = list.Msgs {
            for index in 0..<Int(list.Count) {
                guard let message = msgs[index] else { continue }
                // Taken out of the list, which then destroys only what is left in it.
                msgs[index] = nil
                messages.append(NATSMessage(owning: message))
            }
        }
        if status == NATS_TIMEOUT, messages.isEmpty { return [] }
        if status != NATS_OK, messages.isEmpty {
            try NATSError.check(status, code, "fetching from consumer '\(consumer.durable)'")
        }
        return messages
    }
}

extension NATSConnection {
    /// Binds to the durable consumer `consumer.durable` of `stream`, creating it with
    /// `consumer` if it does not exist.
    public func pullSubscribe(stream: String, consumer: ConsumerConfiguration) throws(NATSError) -> PullSubscription {
        var subscribeOptions = jsSubOptions()
        jsSubOptions_Init(&subscribeOptions)
        var made: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        let status = stream.withCString { streamName in
            consumer.durable.withCString { durable in
                consumer.filterSubject.withCString { filter in
                    subscribeOptions.Stream = streamName
                    subscribeOptions.Config.Durable = durable
                    subscribeOptions.Config.FilterSubject = filter
                    subscribeOptions.Config.DeliverPolicy =
                        switch consumer.deliverPolicy {
                        case .all: js_DeliverAll
                        case .lastPerSubject: js_DeliverLastPerSubject
                        case .new: js_DeliverNew
                        case .startSequence: js_DeliverByStartSequence
                        }
                    if case .startSequence(let first) = consumer.deliverPolicy { subscribeOptions.Config.OptStartSeq = first }
                    subscribeOptions.Config.AckPolicy = consumer.ackPolicy == .all ? js_AckAll : js_AckExplicit
                    subscribeOptions.Config.AckWait = consumer.ackWait.natsNanoseconds
                    subscribeOptions.Config.MaxAckPending = consumer.maxAckPending
                    return js_PullSubscribe(&made, jetStream, filter, durable, nil, &subscribeOptions, &code)
                }
            }
        }
        try NATSError.check(status, code, "subscribing to consumer '\(consumer.durable)' of stream '\(stream)'")
        guard let made else { throw NATSError(invalid: "js_PullSubscribe gave no subscription") }
        return PullSubscription(subscription: made, connection: self, consumer: consumer)
    }

    /// Binds to the existing durable consumer `durable` of `stream` as it is configured
    /// (its filter, policies and position), without creating or changing it.
    public func pullSubscribe(stream: String, existing durable: String) throws(NATSError) -> PullSubscription {
        guard let info = try consumerInfo(stream: stream, durable: durable) else {
            throw NATSError(invalid: "no consumer '\(durable)' on stream '\(stream)'")
        }
        var subscribeOptions = jsSubOptions()
        jsSubOptions_Init(&subscribeOptions)
        var made: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        let status = stream.withCString { streamName in
            durable.withCString { name in
                info.filterSubject.withCString { filter in
                    subscribeOptions.Stream = streamName
                    subscribeOptions.Consumer = name
                    return js_PullSubscribe(&made, jetStream, filter, name, nil, &subscribeOptions, &code)
                }
            }
        }
        try NATSError.check(status, code, "binding to consumer '\(durable)' of stream '\(stream)'")
        guard let made else { throw NATSError(invalid: "js_PullSubscribe gave no subscription") }
        var configuration = ConsumerConfiguration(durable: durable, filterSubject: info.filterSubject)
        configuration.ackWait = info.ackWait
        return PullSubscription(subscription: made, connection: self, consumer: configuration)
    }

    /// Where a durable consumer is; nil if it does not exist.
    public func consumerInfo(stream: String, durable: String) throws(NATSError) -> ConsumerState? {
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        var code = jsErrCode(rawValue: 0)
        let status = js_GetConsumerInfo(&info, jetStream, stream, durable, nil, &code)
        if status == NATS_NOT_FOUND || code == JSConsumerNotFoundErr { return nil }
        try NATSError.check(status, code, "reading consumer '\(durable)' of stream '\(stream)'")
        guard let info else { return nil }
        defer { jsConsumerInfo_Destroy(info) }
        let i = info.pointee
        return ConsumerState(
            deliveredStreamSequence: i.Delivered.Stream, ackFloorStreamSequence: i.AckFloor.Stream,
            ackPending: Int64(i.NumAckPending), pending: i.NumPending,
            filterSubject: i.Config?.pointee.FilterSubject.map { String(cString: $0) } ?? "",
            ackWait: .nanoseconds(i.Config?.pointee.AckWait ?? 0))
    }

    /// Deletes a durable consumer (and its position).
    public func deleteConsumer(stream: String, durable: String) throws(NATSError) {
        var code = jsErrCode(rawValue: 0)
        try NATSError.check(js_DeleteConsumer(jetStream, stream, durable, nil, &code), code, "deleting consumer '\(durable)'")
    }
}
