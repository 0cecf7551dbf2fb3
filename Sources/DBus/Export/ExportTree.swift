import ShmBusSystem

/// An object exported on a connection.
struct ExportedObject: Sendable {
    let id: UInt64
    let path: ObjectPath
    /// Interfaces in declaration order.
    let interfaces: [DBusInterface]
    let isObjectManager: Bool
    let connection: DBusConnection

    func interface(named name: String) -> DBusInterface? { interfaces.first { $0.name == name } }

    /// The interfaces `Introspect` lists: the standard ones this object implements,
    /// then its own.
    var introspectedInterfaces: [DBusInterface] {
        var all = [StandardInterfaces.peer, StandardInterfaces.introspectable]
        if interfaces.contains(where: { !$0.properties.isEmpty }) { all.append(StandardInterfaces.properties) }
        if isObjectManager { all.append(StandardInterfaces.objectManager) }
        return all + interfaces
    }
}

/// The exported objects of one connection, by path (loop thread only).
struct ExportTree {
    private(set) var objects: [ObjectPath: ExportedObject] = [:]

    mutating func add(_ object: ExportedObject) throws(DBusError) {
        guard objects[object.path] == nil else {
            throw .invalidArgument("an object is already exported at \(object.path)")
        }
        objects[object.path] = object
    }

    /// Removes the object with `id`, if it is still exported.
    mutating func remove(id: UInt64, at path: ObjectPath) -> ExportedObject? {
        guard let object = objects[path], object.id == id else { return nil }
        objects[path] = nil
        // A dictionary never shrinks by itself: after thousands of objects went (a
        // registry whose owner of thousands of segments left), its storage would stay.
        objects.shrinkIfSparse()
        return object
    }

    mutating func removeAll() { objects = [:] }

    /// The nearest object manager strictly above `path`: its ancestors are looked up
    /// nearest first, so that exporting and unexporting cost the path's depth, not the
    /// number of objects (a registry exports one per segment, and a departing owner's
    /// thousands of segments were each a walk over all of them).
    func manager(above path: ObjectPath) -> ExportedObject? {
        var ancestor = Substring(path.rawValue)
        while ancestor != "/", let slash = ancestor.lastIndex(of: "/") {
            ancestor = slash == ancestor.startIndex ? "/" : ancestor[..<slash]
            if let object = objects[ObjectPath(unchecked: String(ancestor))], object.isObjectManager { return object }
        }
        return nil
    }

    /// The objects strictly below `path`.
    func objects(below path: ObjectPath) -> [ExportedObject] {
        objects.values.filter { $0.path != path && $0.path.isDescendant(of: path) }.sorted { $0.path < $1.path }
    }

    /// Names of the child nodes of `path` that lead to exported objects.
    func children(of path: ObjectPath) -> [String] {
        let prefix = path.rawValue == "/" ? "/" : path.rawValue + "/"
        var names = Set<String>()
        for objectPath in objects.keys where objectPath.rawValue.hasPrefix(prefix) {
            let rest = objectPath.rawValue.dropFirst(prefix.count)
            if let first = rest.split(separator: "/", maxSplits: 1).first { names.insert(String(first)) }
        }
        return names.sorted()
    }

    /// Whether `path` is an exported object or lies on the way to one.
    func isNode(_ path: ObjectPath) -> Bool {
        objects[path] != nil || !children(of: path).isEmpty
    }
}
