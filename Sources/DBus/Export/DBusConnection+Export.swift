import Synchronization

extension DBusConnection {
    /// Exports an object implementing `interfaces` at `path`.
    ///
    /// The object answers method calls (checked against the declared signatures),
    /// `Introspect`, `org.freedesktop.DBus.Properties` and `Peer`; with
    /// `objectManager`, it also answers `GetManagedObjects` for every object exported
    /// below it. An object exported below an object manager is announced with
    /// `InterfacesAdded` and withdrawn with `InterfacesRemoved`.
    ///
    /// - Returns: the export, which lives as long as the returned handle: releasing it
    ///   (or calling ``DBusExport/cancel()``) unexports the object.
    public func export(_ interfaces: [DBusInterface], at path: ObjectPath, objectManager: Bool = false) async throws -> DBusExport {
        var names = Set<String>()
        for interface in interfaces {
            try interface.validate(forExport: true)
            guard !StandardInterfaces.isStandard(interface.name) else {
                throw DBusError.invalidArgument("\(interface.name) is implemented by the connection itself")
            }
            guard names.insert(interface.name).inserted else {
                throw DBusError.invalidArgument("interface \(interface.name) is listed twice")
            }
        }
        let object = ExportedObject(
            id: makeID(), path: path, interfaces: interfaces, isObjectManager: objectManager, connection: self)
        let manager: ObjectPath? = try await withCheckedThrowingContinuation { continuation in
            let queued = core.submit { loop in
                do {
                    try loop.exports.add(object)
                    continuation.resume(returning: loop.exports.manager(above: path)?.path)
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            if !queued { continuation.resume(throwing: DBusError.disconnected()) }
        }
        let handle = DBusExport(object: object, manager: manager)
        if let manager {
            do {
                let added = try await ObjectManagerDispatch.interfacesAndProperties(of: object).get()
                try emit(
                    path: manager, interface: StandardInterfaces.objectManagerName, member: "InterfacesAdded",
                    [.objectPath(path), added])
            } catch {
                // Never announced, so it leaves without InterfacesRemoved.
                handle.cancel(announcing: false)
                throw error
            }
        }
        return handle
    }
}

/// An exported object. The object stays exported while this handle is alive.
public final class DBusExport: Sendable {
    let object: ExportedObject
    /// The object manager above the object when it was exported, whose
    /// `InterfacesRemoved` is built ahead when it goes.
    private let manager: ObjectPath?
    private let cancelled = Atomic(false)

    public var path: ObjectPath { object.path }
    public var connection: DBusConnection { object.connection }
    public var interfaces: [DBusInterface] { object.interfaces }

    init(object: ExportedObject, manager: ObjectPath?) {
        self.object = object
        self.manager = manager
    }

    deinit {
        cancel()
    }

    /// Unexports the object now; `InterfacesRemoved` is emitted when it was below an
    /// object manager. Idempotent.
    public func cancel() {
        cancel(announcing: true)
    }

    /// Unexports the object; `announcing` is false for an object whose
    /// `InterfacesAdded` was never sent.
    func cancel(announcing: Bool) {
        guard !cancelled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let id = object.id
        let path = object.path
        let names = object.interfaces.map { DBusValue.string($0.name) }
        // Built here, on the releasing thread, rather than on the loop, which has every
        // other message of the connection to move: an owner leaving with thousands of
        // segments withdraws thousands of objects at once.
        let expected = manager
        let prebuilt = announcing ? expected.flatMap { try? Self.interfacesRemoved(from: $0, path: path, names) } : nil
        // Nothing here captures self: this runs in deinit.
        object.connection.core.submit { loop in
            guard loop.exports.remove(id: id, at: path) != nil, announcing else { return }
            // The manager above may have changed since the export (rare): then the
            // signal is built for the one there now.
            guard let manager = loop.exports.manager(above: path)?.path else { return }
            do {
                let raw = try prebuilt.flatMap { manager == expected ? $0 : nil } ?? Self.interfacesRemoved(from: manager, path: path, names)
                try loop.send(raw)
            } catch {
                loop.logger.warning("cannot emit InterfacesRemoved", metadata: ["error": "\(error)"])
            }
        }
    }

    private static func interfacesRemoved(from manager: ObjectPath, path: ObjectPath, _ names: [DBusValue]) throws(DBusError) -> RawMessage {
        try DBusMessage.signal(
            path: manager, interface: StandardInterfaces.objectManagerName, member: "InterfacesRemoved",
            body: [.objectPath(path), .array(.string, names)]
        ).makeRaw()
    }

    /// Emits `signal` of `interface` (the first interface declaring it when nil) from
    /// this object, checking the arguments against the declaration.
    public func emit(_ signal: String, interface: String? = nil, _ arguments: [DBusValue] = []) throws(DBusError) {
        guard !cancelled.load(ordering: .acquiring) else {
            throw .invalidArgument("the export at \(path) was cancelled; it emits no more signals")
        }
        let owner = object.interfaces.first { ($0.name == interface || interface == nil) && $0.signal(named: signal) != nil }
        guard let owner, let declared = owner.signal(named: signal) else {
            throw .invalidArgument("no exported interface at \(path) declares signal \(signal)")
        }
        let actual = DBusSignature(arguments.map(\.type))
        guard actual == declared.signature else {
            throw .invalidArgument("signal \(signal) has signature '\(declared.signature)', got '\(actual)'")
        }
        try object.connection.emit(path: path, interface: owner.name, member: signal, arguments)
    }

    /// Emits `PropertiesChanged` for the named properties of `interface`, reading their
    /// current values (or listing them as invalidated, as their annotations say).
    public func propertiesChanged(_ names: [String], interface: String) async throws {
        guard let declared = object.interface(named: interface) else {
            throw DBusError.invalidArgument("no interface \(interface) is exported at \(path)")
        }
        var properties: [DBusProperty] = []
        for name in names {
            guard let property = declared.property(named: name) else {
                throw DBusError.invalidArgument("interface \(interface) declares no property \(name)")
            }
            properties.append(property)
        }
        guard let signal = await PropertiesDispatch.changedSignal(path: path, interface: interface, properties) else { return }
        try object.connection.onLoop { loop in _ = try? loop.send(signal) }
    }
}
