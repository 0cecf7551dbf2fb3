import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Parsed introspection data (specification, "Introspection Data Format"): the
/// interfaces of one node and the names of its children.
///
/// Services can keep their interfaces in XML files and build their declarations from
/// them (then attach handlers with ``DBusInterface/implementing(_:)``), so that the
/// XML is the source of truth; clients can read what `Introspect` returned.
public struct DBusIntrospection: Sendable {
    public var interfaces: [DBusInterface]
    /// Relative names of the child `<node>` elements.
    public var children: [String]

    /// Parses an introspection document. Invalid XML, unknown access modes, invalid
    /// names and signatures throw ``DBusError/invalidArgument(_:)``.
    public init(xml: String) throws(DBusError) {
        let parser = XMLParser(data: Data(xml.utf8))
        let builder = IntrospectionBuilder()
        parser.delegate = builder
        parser.shouldResolveExternalEntities = false
        let ok = parser.parse()
        if let error = builder.error { throw error }
        guard ok else {
            let reason = parser.parserError.map { "\($0.localizedDescription)" } ?? "unknown error"
            throw .invalidArgument("invalid introspection XML at line \(parser.lineNumber): \(reason)")
        }
        interfaces = builder.interfaces
        children = builder.children
        for interface in interfaces { try interface.validate() }
    }

    /// The interface named `name`.
    public func interface(named name: String) -> DBusInterface? {
        interfaces.first { $0.name == name }
    }
}

/// The XMLParser delegate that builds interface declarations (used only during one
/// parse, on the calling thread).
private final class IntrospectionBuilder: NSObject, XMLParserDelegate {
    var interfaces: [DBusInterface] = []
    var children: [String] = []
    var error: DBusError?

    private var depth = 0
    private var interface: DBusInterface?
    private var method: DBusMethod?
    private var signal: DBusSignal?
    private var property: DBusProperty?
    private var argument: (DBusArgument, isOutput: Bool)?

    private func fail(_ message: String, _ parser: XMLParser) {
        if error == nil { error = .invalidArgument("introspection XML line \(parser.lineNumber): \(message)") }
        parser.abortParsing()
    }

    private func type(_ text: String?, _ parser: XMLParser) -> DBusType? {
        guard let text, let signature = DBusSignature(rawValue: text), let type = signature.singleType else {
            fail("'\(text ?? "")' is not a single complete type", parser)
            return nil
        }
        return type
    }

    func parser(
        _ parser: XMLParser, didStartElement element: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        depth += 1
        let name = attributes["name"]
        switch element {
        case "node":
            // Child nodes sit directly inside the root node.
            if depth == 2, let name { children.append(name) }
        case "interface":
            guard let name else { return fail("<interface> without a name", parser) }
            interface = DBusInterface(name)
        case "method":
            guard let name else { return fail("<method> without a name", parser) }
            method = DBusMethod(name)
        case "signal":
            guard let name else { return fail("<signal> without a name", parser) }
            signal = DBusSignal(name)
        case "property":
            guard let name, let type = type(attributes["type"], parser) else {
                return fail("<property> needs a name and a type", parser)
            }
            guard let access = DBusProperty.Access(rawValue: attributes["access"] ?? "") else {
                return fail("property \(name) has access '\(attributes["access"] ?? "")'", parser)
            }
            property = DBusProperty(name, type: type, access: access)
        case "arg":
            guard let type = type(attributes["type"], parser) else { return }
            // Method arguments are inputs unless marked out; signal arguments are outputs.
            let isOutput = method == nil || attributes["direction"] == "out"
            argument = (DBusArgument(name, type), isOutput)
        case "annotation":
            guard let name, let value = attributes["value"] else {
                return fail("<annotation> needs a name and a value", parser)
            }
            let annotation = DBusAnnotation(name, value)
            if argument != nil {
                argument?.0.annotations.append(annotation)
            } else if property != nil {
                property?.annotations.append(annotation)
            } else if method != nil {
                method?.annotations.append(annotation)
            } else if signal != nil {
                signal?.annotations.append(annotation)
            } else {
                interface?.annotations.append(annotation)
            }
        default:
            break
        }
    }

    func parser(_ parser: XMLParser, didEndElement element: String, namespaceURI: String?, qualifiedName: String?) {
        depth -= 1
        switch element {
        case "interface":
            if let interface { interfaces.append(interface) }
            interface = nil
        case "method":
            if let method { interface?.methods.append(method) }
            method = nil
        case "signal":
            if let signal { interface?.signals.append(signal) }
            signal = nil
        case "property":
            if let property { interface?.properties.append(property) }
            property = nil
        case "arg":
            guard let (arg, isOutput) = argument else { return }
            if method != nil {
                if isOutput { method?.outputs.append(arg) } else { method?.inputs.append(arg) }
            } else {
                signal?.arguments.append(arg)
            }
            argument = nil
        default:
            break
        }
    }
}
