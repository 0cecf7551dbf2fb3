import DBus

/// The two sides of the method calls: the protocol a served object implements, with
/// the dispatch that decodes and encodes for it, and the typed client proxy.
extension Emitter {
    func implementation(_ w: inout CodeWriter) throws {
        w.line()
        try w.block("extension \(ns) {") { w in
            w.line("/// What an object serving `\(interface.name)` implements: one requirement per")
            w.line("/// method (with the call, for the caller's identity) and per readable property.")
            try w.block("public protocol Implementation: DBusObjectImplementation {") { w in
                for method in interface.methods {
                    w.doc(InterfaceModel.doc(method.annotations))
                    let inputs = try model.inputs(of: method).map { "\($0.swiftName): \($0.swiftType)" }
                    let outputs = try model.outputs(of: method)
                    let result = outputs.isEmpty ? "" : " -> \(InterfaceModel.resultType(outputs))"
                    w.line("func \(SwiftNames.lowerCamel(method.name))(\((inputs + ["call: DBusMethodCall"]).joined(separator: ", "))) async throws\(result)")
                }
                for property in interface.properties {
                    let member = try model.member(property)
                    w.doc(InterfaceModel.doc(property.annotations))
                    w.line("var \(member.swiftName): \(member.swiftType) { get async throws }")
                }
            }
            w.line()
            w.line("/// The declaration with `object`'s methods and property getters attached, ready to")
            w.line("/// export: arguments are decoded (typed dictionaries checked) before `object` sees")
            w.line("/// them, and its results encoded with the declared types.")
            try w.block("public static func interface(implementedBy object: some Implementation) -> DBusInterface {") { w in
                w.line("var interface = declaration")
                for (index, method) in interface.methods.enumerated() { try dispatch(method, index: index, &w) }
                for (index, property) in interface.properties.enumerated() {
                    let member = try model.member(property)
                    w.line("interface.properties[\(index)].get = { try await object.\(member.swiftName).dbusValue }")
                }
                w.line("return interface")
            }
        }
    }

    private func dispatch(_ method: DBusMethod, index: Int, _ w: inout CodeWriter) throws {
        let inputs = try model.inputs(of: method)
        let outputs = try model.outputs(of: method)
        w.block("interface.methods[\(index)].handler = { call in") { w in
            var labels: [String] = []
            if !inputs.isEmpty {
                let types = inputs.map(\.swiftType)
                w.line("let arguments: \(types.count == 1 ? types[0] : "(" + types.joined(separator: ", ") + ")")")
                w.line("do throws(DBusError) { arguments = try call.arguments.decode(\(InterfaceModel.decodeTypes(inputs))) } catch { throw object.invalidArguments(error) }")
                labels = inputs.enumerated().map { "\($1.swiftName): arguments\(inputs.count == 1 ? "" : ".\($0)")" }
            }
            let invocation = "try await object.\(SwiftNames.lowerCamel(method.name))(\((labels + ["call: call"]).joined(separator: ", ")))"
            switch outputs.count {
            case 0:
                w.line(invocation)
                w.line("return []")
            case 1:
                w.line("return [\(invocation).dbusValue]")
            default:
                w.line("let reply = \(invocation)")
                w.line("return [" + outputs.map { "reply.\($0.swiftName).dbusValue" }.joined(separator: ", ") + "]")
            }
        }
    }

    func proxy(_ w: inout CodeWriter) throws {
        w.line()
        try w.block("extension \(ns) {") { w in
            w.line("/// A typed client of `\(interface.name)` on one remote object. Calls are checked")
            w.line("/// against ``declaration`` and replies decoded with the declared types; errors")
            w.line("/// arrive as the peer's `DBusError`.")
            try w.block("public struct Proxy: Sendable {") { w in
                w.line("public let base: DBusProxy")
                w.line()
                w.block("public init(connection: DBusConnection, destination: String, path: ObjectPath) {") { w in
                    w.line("base = declaration.proxy(on: connection, destination: destination, path: path)")
                }
                for method in interface.methods { try proxyMethod(method, &w) }
                for property in interface.properties {
                    let member = try model.member(property)
                    w.line()
                    w.doc(InterfaceModel.doc(property.annotations))
                    w.block("public var \(member.swiftName): \(member.swiftType) {") { w in
                        w.line("get async throws { try await base.property(\(SwiftNames.literal(property.name))).decode(as: \(member.swiftType).self) }")
                    }
                }
                if !interface.properties.isEmpty {
                    w.line()
                    w.line("/// Every property in one call (`GetAll`).")
                    w.block("public func properties() async throws -> Properties {") { w in
                        w.line("try Properties(try await base.allProperties())")
                    }
                }
            }
        }
    }

    private func proxyMethod(_ method: DBusMethod, _ w: inout CodeWriter) throws {
        let inputs = try model.inputs(of: method)
        let outputs = try model.outputs(of: method)
        let parameters = inputs.map { "\($0.swiftName): \($0.swiftType)" } + ["timeout: Duration? = DBusConnection.defaultTimeout"]
        let result = outputs.isEmpty ? "" : " -> \(InterfaceModel.resultType(outputs))"
        w.line()
        w.doc(InterfaceModel.doc(method.annotations))
        w.block("public func \(SwiftNames.lowerCamel(method.name))(\(parameters.joined(separator: ", "))) async throws\(result) {") { w in
            let call = "try await base.call(\(SwiftNames.literal(method.name)), [\(inputs.map { "\($0.swiftName).dbusValue" }.joined(separator: ", "))], timeout: timeout)"
            switch outputs.count {
            case 0:
                w.line("_ = \(call)")
            case 1:
                w.line("return \(call).decode(\(outputs[0].swiftType).self)")
            default:
                let names = outputs.map(\.swiftName)
                w.line("let (\(names.joined(separator: ", "))) = \(call)")
                w.line("    .decode(\(InterfaceModel.decodeTypes(outputs)))")
                w.line("return (" + names.map { "\($0): \($0)" }.joined(separator: ", ") + ")")
            }
        }
    }
}
