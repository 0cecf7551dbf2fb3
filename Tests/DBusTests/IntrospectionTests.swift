import DBus
import TestSupport
import Foundation
import Testing

@Suite struct IntrospectionTests {
    static let xmlFiles = ["org.shmbus.Registry1.xml", "org.shmbus.Publisher1.xml", "org.shmbus.Keeper1.xml"]

    static func repositoryFile(_ name: String) throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return try String(contentsOf: root.appendingPathComponent("dbus").appendingPathComponent(name), encoding: .utf8)
    }

    @Test(arguments: xmlFiles)
    func interfaceFilesParseAndRegenerateIdentically(_ file: String) throws {
        let parsed = try DBusIntrospection(xml: try Self.repositoryFile(file))
        #expect(!parsed.interfaces.isEmpty)
        let regenerated = DBusInterface.introspectionDocument(interfaces: parsed.interfaces, children: parsed.children)
        let again = try DBusIntrospection(xml: regenerated)
        let a = parsed.interfaces.map { $0.introspectionXML() }
        let b = again.interfaces.map { $0.introspectionXML() }
        #expect(a == b)
    }

    @Test func parsesMethodsSignalsPropertiesAnnotationsAndChildren() throws {
        let xml = """
            <node>
              <interface name="org.example.A">
                <annotation name="org.example.Doc" value="x &amp; y"/>
                <method name="M"><arg name="in1" type="s" direction="in"/><arg type="a{sv}"/><arg name="r" type="(ii)" direction="out"/></method>
                <signal name="S"><arg name="v" type="v"/></signal>
                <property name="P" type="ao" access="readwrite"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="invalidates"/></property>
              </interface>
              <node name="child1"/><node name="child2"><interface name="org.example.Nested"/></node>
            </node>
            """
        let parsed = try DBusIntrospection(xml: xml)
        #expect(parsed.children == ["child1", "child2"])
        let a = try #require(parsed.interface(named: "org.example.A"))
        #expect(a.annotations == [DBusAnnotation("org.example.Doc", "x & y")])
        #expect(a.method(named: "M")?.inputSignature == "sa{sv}")
        #expect(a.method(named: "M")?.outputSignature == "(ii)")
        #expect(a.signal(named: "S")?.signature == "v")
        #expect(a.property(named: "P")?.access == .readwrite)
        #expect(a.property(named: "P")?.changeSignal == .invalidates)
        #expect(parsed.interface(named: "org.example.Nested") != nil)
    }

    @Test func invalidIntrospectionDataThrows() {
        for xml in [
            "<node><interface name=\"bad name\"/></node>",
            "<node><interface name=\"org.a.B\"><method name=\"M\"><arg type=\"a{vs}\"/></method></interface></node>",
            "<node><interface name=\"org.a.B\"><property name=\"P\" type=\"s\" access=\"sometimes\"/></interface></node>",
            "<node><interface",
        ] {
            #expect(throws: DBusError.self, "\(xml)") { try DBusIntrospection(xml: xml) }
        }
    }
}
