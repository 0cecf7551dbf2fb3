import DBus
import Foundation

// shmbus-codegen: turns introspection XML into the typed contract module.
//
//   shmbus-codegen --output Sources/ShmBusProtocol/Generated dbus/org.shmbus.Registry1.xml …
//
// One Swift file per interface, named for its namespace (`Registry1.swift`). The
// output is a function of the XML alone, so a test can run the generator again and
// compare; `make generate` is how the committed files are refreshed.

func generate(arguments: [String]) throws {
    guard arguments.count >= 3, arguments[0] == "--output" else {
        throw GeneratorError("usage: shmbus-codegen --output DIRECTORY FILE.xml…")
    }
    let output = URL(fileURLWithPath: arguments[1], isDirectory: true)
    try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
    for path in arguments.dropFirst(2) {
        let xml = try String(contentsOfFile: path, encoding: .utf8)
        let introspection: DBusIntrospection
        do {
            introspection = try DBusIntrospection(xml: xml)
        } catch {
            throw GeneratorError("\(path): \(error.message)")
        }
        let source = "dbus/" + URL(fileURLWithPath: path).lastPathComponent
        for interface in introspection.interfaces {
            let emitter = Emitter(model: try InterfaceModel(interface), source: source)
            let file = output.appendingPathComponent(SwiftNames.namespace(of: interface.name) + ".swift")
            try emitter.file().write(to: file, atomically: true, encoding: .utf8)
        }
    }
}

do {
    try generate(arguments: Array(CommandLine.arguments.dropFirst()))
} catch {
    FileHandle.standardError.write(Data("shmbus-codegen: \(error)\n".utf8))
    exit(64)
}
