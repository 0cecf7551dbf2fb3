/// Introspection XML (specification, "Introspection Data Format").
extension DBusInterface {
    /// The `<interface>` element of this declaration.
    public func introspectionXML(indent: String = "  ") -> String {
        var out = "\(indent)<interface name=\"\(xmlEscape(name))\">\n"
        let inner = indent + "  "
        for annotation in annotations { out += annotation.xml(indent: inner) }
        for method in methods {
            out += element("method", method.name, indent: inner, annotations: method.annotations) { deeper in
                method.inputs.map { $0.xml(indent: deeper, direction: "in") }.joined()
                    + method.outputs.map { $0.xml(indent: deeper, direction: "out") }.joined()
            }
        }
        for signal in signals {
            out += element("signal", signal.name, indent: inner, annotations: signal.annotations) { deeper in
                signal.arguments.map { $0.xml(indent: deeper, direction: nil) }.joined()
            }
        }
        for property in properties {
            let open = "\(inner)<property name=\"\(xmlEscape(property.name))\" type=\"\(property.type.signature)\" access=\"\(property.access.rawValue)\""
            if property.annotations.isEmpty {
                out += open + "/>\n"
            } else {
                out += open + ">\n" + property.annotations.map { $0.xml(indent: inner + "  ") }.joined() + "\(inner)</property>\n"
            }
        }
        out += "\(indent)</interface>\n"
        return out
    }

    private func element(
        _ tag: String, _ name: String, indent: String, annotations: [DBusAnnotation], children: (String) -> String
    ) -> String {
        let deeper = indent + "  "
        let body = annotations.map { $0.xml(indent: deeper) }.joined() + children(deeper)
        if body.isEmpty { return "\(indent)<\(tag) name=\"\(xmlEscape(name))\"/>\n" }
        return "\(indent)<\(tag) name=\"\(xmlEscape(name))\">\n\(body)\(indent)</\(tag)>\n"
    }

    /// A complete introspection document for an object with `interfaces` and child
    /// nodes `children` (relative names).
    public static func introspectionDocument(interfaces: [DBusInterface], children: [String]) -> String {
        var out = """
            <!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
            <node>\n
            """
        for interface in interfaces { out += interface.introspectionXML() }
        for child in children { out += "  <node name=\"\(xmlEscape(child))\"/>\n" }
        out += "</node>\n"
        return out
    }
}

extension DBusAnnotation {
    func xml(indent: String) -> String {
        "\(indent)<annotation name=\"\(xmlEscape(name))\" value=\"\(xmlEscape(value))\"/>\n"
    }
}

extension DBusArgument {
    func xml(indent: String, direction: String?) -> String {
        var open = "\(indent)<arg"
        if let name { open += " name=\"\(xmlEscape(name))\"" }
        open += " type=\"\(xmlEscape(type.signature))\""
        if let direction { open += " direction=\"\(direction)\"" }
        if annotations.isEmpty { return open + "/>\n" }
        return open + ">\n" + annotations.map { $0.xml(indent: indent + "  ") }.joined() + "\(indent)</arg>\n"
    }
}

/// `s` with XML's five special characters escaped, for attribute values and text of
/// introspection data and bus configuration files.
public func xmlEscape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(c)
        }
    }
    return out
}
