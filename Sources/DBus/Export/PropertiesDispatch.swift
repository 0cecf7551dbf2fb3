/// `org.freedesktop.DBus.Properties` for exported objects: `Get`, `GetAll`, `Set`, and
/// `PropertiesChanged` after a successful `Set`.
enum PropertiesDispatch {
    static func handle(_ message: DBusMessage, member: String, object: ExportedObject, loop: ConnectionLoop) {
        let core = loop.core
        switch member {
        case "Get":
            guard let (interfaceName, name) = try? message.body.decode(String.self, String.self) else {
                return loop.reply(to: message, with: .invalidArgument("Get takes arguments of signature 'ss', got '\(message.signature)'"))
            }
            let property: DBusProperty
            do { property = try find(name, in: interfaceName, of: object).1 } catch {
                return loop.reply(to: message, with: error)
            }
            guard property.access.isReadable, let get = property.get else {
                return loop.reply(to: message, with: .invalidArgument("property \(name) is write-only"))
            }
            loop.schedule(message) { await read(property, get).map { [.variant($0)] } }
        case "GetAll":
            guard let interfaceName = try? message.body.decode(String.self) else {
                return loop.reply(to: message, with: .invalidArgument("GetAll takes arguments of signature 's', got '\(message.signature)'"))
            }
            let interfaces: [DBusInterface]
            if interfaceName.isEmpty {
                interfaces = object.interfaces
            } else if let interface = object.interface(named: interfaceName) {
                interfaces = [interface]
            } else if StandardInterfaces.isStandard(interfaceName) {
                interfaces = []
            } else {
                return loop.reply(to: message, with: DBusError(
                    name: DBusError.unknownInterfaceName, message: "Object \(object.path) has no interface '\(interfaceName)'"))
            }
            loop.schedule(message) {
                var entries: [DBusDictEntry] = []
                for interface in interfaces {
                    switch await values(of: interface) {
                    case .success(let more): entries += more
                    case .failure(let error): return .failure(error)
                    }
                }
                return .success([.dictionary(key: .string, value: .variant, entries)])
            }
        case "Set":
            guard let (interfaceName, name, variant) = try? message.body.decode(String.self, String.self, DBusVariant.self)
            else {
                return loop.reply(to: message, with: .invalidArgument("Set takes arguments of signature 'ssv', got '\(message.signature)'"))
            }
            let interface: DBusInterface
            let property: DBusProperty
            do { (interface, property) = try find(name, in: interfaceName, of: object) } catch {
                return loop.reply(to: message, with: error)
            }
            guard property.access.isWritable, let set = property.set else {
                return loop.reply(to: message, with: DBusError(
                    name: DBusError.propertyReadOnlyName, message: "Property '\(name)' is read-only"))
            }
            guard variant.value.type == property.type else {
                return loop.reply(to: message, with: .invalidArgument(
                    "property \(name) has type '\(property.type)', got a value of type '\(variant.value.type)'"))
            }
            let path = object.path
            loop.schedule(message) {
                do {
                    try await set(variant.value)
                } catch {
                    return .failure(asDBusError(error))
                }
                // Sent before the reply (the loop sends in order): a caller that reads
                // the property again once it has the reply has heard of the change.
                if let signal = await changedSignal(path: path, interface: interface.name, [property]) {
                    core.submit { loop in _ = try? loop.send(signal) }
                }
                return .success([])
            }
        default:
            loop.reply(to: message, with: DBusError(
                name: DBusError.unknownMethodName, message: "No such method '\(member)' in interface '\(StandardInterfaces.propertiesName)'"))
        }
    }

    private static func find(_ name: String, in interfaceName: String, of object: ExportedObject) throws(DBusError) -> (
        DBusInterface, DBusProperty
    ) {
        let candidates = interfaceName.isEmpty ? object.interfaces : object.interface(named: interfaceName).map { [$0] } ?? []
        if !interfaceName.isEmpty, candidates.isEmpty {
            throw DBusError(name: DBusError.unknownInterfaceName, message: "Object \(object.path) has no interface '\(interfaceName)'")
        }
        for interface in candidates {
            if let property = interface.property(named: name) { return (interface, property) }
        }
        throw DBusError(name: DBusError.unknownPropertyName, message: "No such property '\(name)'")
    }

    /// Reads one property and checks its value against the declared type.
    static func read(_ property: DBusProperty, _ get: DBusProperty.Getter) async -> Result<DBusValue, DBusError> {
        do {
            let value = try await get()
            guard value.type == property.type else {
                return .failure(.failed("property \(property.name) produced a value of type '\(value.type)', not '\(property.type)'"))
            }
            return .success(value)
        } catch {
            return .failure(asDBusError(error))
        }
    }

    /// Every readable property of `interface`, as `a{sv}` entries.
    static func values(of interface: DBusInterface) async -> Result<[DBusDictEntry], DBusError> {
        var entries: [DBusDictEntry] = []
        for property in interface.properties where property.access.isReadable {
            guard let get = property.get else { continue }
            switch await read(property, get) {
            case .success(let value):
                entries.append(DBusDictEntry(key: .string(property.name), value: .variant(value)))
            case .failure(let error):
                return .failure(error)
            }
        }
        return .success(entries)
    }

    /// A `PropertiesChanged` signal for `properties`, following each one's
    /// `EmitsChangedSignal` annotation; nil when none of them signals changes.
    static func changedSignal(path: ObjectPath, interface: String, _ properties: [DBusProperty]) async -> RawMessage? {
        var changed: [DBusDictEntry] = []
        var invalidated: [DBusValue] = []
        for property in properties {
            switch property.changeSignal {
            case .true:
                if let get = property.get, case .success(let value) = await read(property, get) {
                    changed.append(DBusDictEntry(key: .string(property.name), value: .variant(value)))
                } else {
                    invalidated.append(.string(property.name))
                }
            case .invalidates:
                invalidated.append(.string(property.name))
            case .const, .false:
                continue
            }
        }
        guard !changed.isEmpty || !invalidated.isEmpty else { return nil }
        return try? DBusMessage.signal(
            path: path, interface: StandardInterfaces.propertiesName, member: "PropertiesChanged",
            body: [.string(interface), .dictionary(key: .string, value: .variant, changed), .array(.string, invalidated)]
        ).makeRaw()
    }
}

/// `org.freedesktop.DBus.ObjectManager` for exported objects.
enum ObjectManagerDispatch {
    /// `a{sa{sv}}`: the object's interfaces and their properties.
    static func interfacesAndProperties(of object: ExportedObject) async -> Result<DBusValue, DBusError> {
        var entries: [DBusDictEntry] = []
        for interface in object.interfaces {
            switch await PropertiesDispatch.values(of: interface) {
            case .success(let properties):
                entries.append(DBusDictEntry(
                    key: .string(interface.name), value: .dictionary(key: .string, value: .variant, properties)))
            case .failure(let error):
                return .failure(error)
            }
        }
        return .success(.dictionary(key: .string, value: .dictionary(key: .string, value: .variant), entries))
    }

    /// `a{oa{sa{sv}}}`: the reply of `GetManagedObjects`.
    static func managedObjects(_ objects: [ExportedObject]) async -> Result<DBusValue, DBusError> {
        var entries: [DBusDictEntry] = []
        for object in objects {
            switch await interfacesAndProperties(of: object) {
            case .success(let value): entries.append(DBusDictEntry(key: .objectPath(object.path), value: value))
            case .failure(let error): return .failure(error)
            }
        }
        return .success(.dictionary(
            key: .objectPath, value: .dictionary(key: .string, value: .dictionary(key: .string, value: .variant)), entries))
    }
}

func asDBusError(_ error: any Error) -> DBusError {
    if let error = error as? DBusError { return error }
    if let error = error as? any DBusErrorConvertible { return error.dbusError }
    return .failed("\(error)")
}
