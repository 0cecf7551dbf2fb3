import CDBus
import Logging

/// Method-call dispatch, on the loop thread. Lookups happen here; handlers and
/// property accessors run as tasks when the connection's ``CallScheduler`` gives the
/// sender its turn, and send their replies back through the loop.
extension ConnectionLoop {
    func reply(to call: DBusMessage, with error: DBusError) {
        guard !call.noReplyExpected else { return }
        do {
            try send(call.errorReply(error).makeRaw())
        } catch {
            logger.warning("cannot send an error reply", metadata: ["error": "\(error)"])
        }
    }

    func reply(to call: DBusMessage, _ body: [DBusValue]) {
        guard !call.noReplyExpected else { return }
        do {
            try send(call.methodReturn(body).makeRaw())
        } catch {
            reply(to: call, with: .failed("cannot send the reply: \(error.message)"))
        }
    }

    /// Builds a reply off the loop thread and hands it to the loop to send. Until the
    /// loop has sent it, the scheduler counts it among what waits for the bus, so a
    /// loop slow to wake delays new handlers instead of queueing replies behind it.
    /// The scheduler's observer hears of `served` once the reply is sent.
    static func sendReplyFromTask(
        to call: DBusMessage, _ result: Result<[DBusValue], DBusError>, through core: LoopCore,
        served: DBusConnection.ServedCall, answeredAt answered: ContinuousClock.Instant
    ) {
        guard !call.noReplyExpected else {
            core.scheduler.observer?.report(served)
            return
        }
        let reply: DBusMessage
        switch result {
        case .success(let body): reply = call.methodReturn(body)
        case .failure(let error): reply = call.errorReply(error)
        }
        let raw: RawMessage
        do {
            raw = try reply.makeRaw()
        } catch {
            // A body that fails validation (say, over a size limit) still gets an answer.
            guard let fallback = try? call.errorReply(error).makeRaw() else { return }
            raw = fallback
        }
        let size = raw.approximateSize
        core.scheduler.replyQueued(bytes: size)
        let queued = core.submit { loop in
            do { try loop.send(raw) } catch { loop.logger.debug("reply not sent", metadata: ["error": "\(error)"]) }
            loop.core.scheduler.replySent(bytes: size)
            if let observer = loop.core.scheduler.observer {
                var served = served
                served.replying = .now - answered
                observer.report(served)
            }
            loop.reportOutgoing()
        }
        if !queued { core.scheduler.replySent(bytes: size) }
    }
}

extension ExportTree {
    func dispatch(_ message: DBusMessage, loop: ConnectionLoop) {
        guard let path = message.path, let member = message.member else {
            loop.reply(to: message, with: .invalidArgument("method call without path or member"))
            return
        }
        let object = objects[path]
        // A call without an INTERFACE field goes to an interface of the object that
        // declares the method: its own first, then the standard ones (specification,
        // "Message Format": the interface is optional for method calls).
        var interface = message.interface
        if interface == nil {
            let candidates = object.map { $0.interfaces + $0.introspectedInterfaces } ?? [StandardInterfaces.introspectable, StandardInterfaces.peer]
            interface = candidates.first { $0.method(named: member) != nil }?.name
        }

        if interface == StandardInterfaces.peerName {
            return PeerDispatch.handle(message, member: member, loop: loop)
        }
        if interface == StandardInterfaces.introspectableName {
            guard member == "Introspect" else { return loop.reply(to: message, with: unknownMethod(member, interface)) }
            guard isNode(path) else { return loop.reply(to: message, with: unknownObject(path)) }
            guard message.signature.rawValue.isEmpty else {
                return loop.reply(to: message, with: wrongSignature("Introspect", "", message.signature))
            }
            let interfaces = object?.introspectedInterfaces ?? [StandardInterfaces.peer, StandardInterfaces.introspectable]
            let xml = DBusInterface.introspectionDocument(interfaces: interfaces, children: children(of: path))
            return loop.reply(to: message, [.string(xml)])
        }

        guard let object else { return loop.reply(to: message, with: unknownObject(path)) }

        if interface == StandardInterfaces.propertiesName {
            return PropertiesDispatch.handle(message, member: member, object: object, loop: loop)
        }
        if interface == StandardInterfaces.objectManagerName {
            guard object.isObjectManager else { return loop.reply(to: message, with: unknownInterface(interface!, path)) }
            guard member == "GetManagedObjects" else { return loop.reply(to: message, with: unknownMethod(member, interface)) }
            guard message.signature.rawValue.isEmpty else {
                return loop.reply(to: message, with: wrongSignature(member, "", message.signature))
            }
            let managed = objects(below: path)
            loop.schedule(message) { await ObjectManagerDispatch.managedObjects(managed).map { [$0] } }
            return
        }

        let method: DBusMethod?
        if let interface {
            guard let declared = object.interface(named: interface) else {
                return loop.reply(to: message, with: unknownInterface(interface, path))
            }
            method = declared.method(named: member)
        } else {
            method = object.interfaces.lazy.compactMap { $0.method(named: member) }.first
        }
        guard let method, let handler = method.handler else {
            return loop.reply(to: message, with: unknownMethod(member, interface))
        }
        let expected = method.inputSignature
        guard message.signature == expected else {
            return loop.reply(to: message, with: wrongSignature(member, expected.rawValue, message.signature))
        }
        let call = DBusMethodCall(message: message, connection: object.connection)
        let logger = loop.logger
        loop.schedule(message) { await Self.run(handler, for: call, outputs: method.outputSignature, logger: logger) }
    }

    /// Runs a handler and checks its reply against the declared output signature.
    private static func run(
        _ handler: DBusMethod.Handler, for call: DBusMethodCall, outputs: DBusSignature, logger: Logger
    ) async -> Result<[DBusValue], DBusError> {
        do {
            let body = try await handler(call)
            let signature = DBusSignature(body.map(\.type))
            guard signature == outputs else {
                logger.error(
                    "handler returned the wrong signature",
                    metadata: ["member": "\(call.message.member ?? "")", "expected": "\(outputs)", "got": "\(signature)"])
                return .failure(.failed("\(call.message.member ?? "the method") produced a reply of the wrong type"))
            }
            return .success(body)
        } catch {
            return .failure(asDBusError(error))
        }
    }

    private func unknownObject(_ path: ObjectPath) -> DBusError {
        DBusError(name: DBusError.unknownObjectName, message: "No such object path '\(path)'")
    }

    private func unknownInterface(_ interface: String, _ path: ObjectPath) -> DBusError {
        DBusError(name: DBusError.unknownInterfaceName, message: "Object \(path) has no interface '\(interface)'")
    }

    private func unknownMethod(_ member: String, _ interface: String?) -> DBusError {
        let where_ = interface.map { " in interface '\($0)'" } ?? ""
        return DBusError(name: DBusError.unknownMethodName, message: "No such method '\(member)'\(where_)")
    }

    private func wrongSignature(_ member: String, _ expected: String, _ got: DBusSignature) -> DBusError {
        .invalidArgument("\(member) takes arguments of signature '\(expected)', got '\(got)'")
    }
}

/// `org.freedesktop.DBus.Peer`. libdbus answers it itself when the call names the
/// interface; calls that do not name it reach the exports and are answered here.
enum PeerDispatch {
    static func handle(_ message: DBusMessage, member: String, loop: ConnectionLoop) {
        guard message.signature.rawValue.isEmpty else {
            return loop.reply(to: message, with: .invalidArgument("\(member) takes no arguments, got '\(message.signature)'"))
        }
        switch member {
        case "Ping":
            loop.reply(to: message, [])
        case "GetMachineId":
            var error = CDBus.DBusError()
            dbus_error_init(&error)
            guard let id = dbus_try_get_local_machine_id(&error) else {
                return loop.reply(to: message, with: DBusError.consuming(&error, context: "no machine ID"))
            }
            let text = String(cString: id)
            dbus_free(id)
            loop.reply(to: message, [.string(text)])
        default:
            loop.reply(to: message, with: DBusError(
                name: DBusError.unknownMethodName, message: "No such method '\(member)' in interface '\(StandardInterfaces.peerName)'"))
        }
    }
}
