import Foundation
import ShmBusSystem
import TestSupport
import Testing

/// README.md's Swift code builds against this checkout, so the front door cannot rot.
///
/// Every ```swift block of the README is taken as a newcomer would take it. The block
/// that starts with `// swift-tools-version` is the newcomer's `Package.swift`: it
/// becomes the manifest of a package made under `.build/readme-snippets`, with its
/// `.package(url: "…/shmbus", …)` line pointed at this checkout. Every other block is a
/// program pasted into a `main.swift` of its own (top-level code, `await` included),
/// built as an extra executable target of that package that depends on the product
/// the README names. A block preceded by `<!-- readme-snippets: skip -->` is left out.
@Suite struct ReadmeSnippetTests {
    /// The block that marks the next ```swift block as not compiled.
    static let skipMarker = "<!-- readme-snippets: skip -->"

    @Test(.timeLimit(.minutes(10)))
    func everySwiftBlockOfTheReadmeBuilds() async throws {
        let readme = try String(contentsOf: BuiltProducts.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let snippets = ReadmeSnippets(markdown: readme)
        // The front door itself may not be skipped: the manifest and the three uses.
        let manifest = try #require(snippets.manifest, "README.md shows no Package.swift (a ```swift block starting with // swift-tools-version)")
        for use in ["Publisher.open(", "Subscriber.open(", "Subscriber.latest("] {
            #expect(snippets.programs.contains { $0.contains(use) }, "no compiled README block uses \(use)")
        }

        let package = try SnippetPackage(readmeManifest: manifest, programs: snippets.programs)
        let (status, out, err) = try await package.build()
        #expect(status == .exited(0), "the README's Swift code does not build:\n\(package.describe())\n\(out)\n\(err)")
    }

    @Test func blocksAreFoundAndTheMarkerSkipsOne() {
        let markdown = """
            Text.

            ```swift
            // swift-tools-version: 6.1
            import PackageDescription
            ```

            ```sh
            make docs
            ```

            \(Self.skipMarker)
            ```swift
            let notCompiled = 1
            ```

              ```swift
              import ShmBus
              print(1)
              ```
            """
        let snippets = ReadmeSnippets(markdown: markdown)
        #expect(snippets.manifest == "// swift-tools-version: 6.1\nimport PackageDescription\n")
        #expect(snippets.programs == ["import ShmBus\nprint(1)\n"])
        #expect(snippets.skipped == 1)
    }

    @Test func theDependencyLineIsPointedAtTheCheckout() throws {
        let manifest = """
            let package = Package(
                name: "MyApp",
                dependencies: [
                    .package(url: "https://github.com/shmbus/shmbus", from: "0.2.0"),
                ],
                targets: [.executableTarget(name: "MyApp", dependencies: [.product(name: "ShmBus", package: "shmbus")])]
            )
            """
        let (local, targets) = try SnippetPackage.localManifest(from: manifest, checkout: "/x/shmbus")
        #expect(local.contains(#".package(path: "/x/shmbus"),"#))
        #expect(!local.contains("https://"))
        #expect(targets == ["MyApp"])
        #expect(throws: SnippetPackage.Problem.self) {
            try SnippetPackage.localManifest(from: "let package = Package(name: \"MyApp\")", checkout: "/x/shmbus")
        }
    }
}

/// The ```swift blocks of a Markdown document, split into the manifest and programs.
struct ReadmeSnippets {
    /// The block starting with `// swift-tools-version`, if any.
    var manifest: String?
    /// Every other compiled block, in order.
    var programs: [String] = []
    /// Blocks left out by the skip marker.
    var skipped = 0

    init(markdown: String) {
        var block: [String]?
        var indent = 0
        var skipNext = false
        var previous = ""
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if var lines = block {
                if trimmed == "```" {
                    let text = lines.map { $0 + "\n" }.joined()
                    if skipNext {
                        skipped += 1
                    } else if text.hasPrefix("// swift-tools-version") {
                        manifest = text
                    } else {
                        programs.append(text)
                    }
                    block = nil
                    skipNext = false
                } else {
                    // Lines of an indented fence (in a list) lose the fence's indentation.
                    lines.append(String(line.dropFirst(min(indent, line.prefix { $0 == " " }.count))))
                    block = lines
                }
            } else if trimmed == "```swift" {
                block = []
                indent = line.prefix { $0 == " " }.count
                skipNext = previous == ReadmeSnippetTests.skipMarker
            }
            if !trimmed.isEmpty { previous = trimmed }
        }
    }
}

/// A package made from the README's manifest, with one executable target per program,
/// built in `.build/readme-snippets` of this checkout.
struct SnippetPackage {
    enum Problem: Error, CustomStringConvertible {
        case noDependencyLine
        var description: String {
            "the README's Package.swift has no .package(url: \"…/shmbus\", …) line to point at the checkout"
        }
    }

    static let root = BuiltProducts.repositoryRoot.appendingPathComponent(".build/readme-snippets")
    let directory = Self.root.appendingPathComponent("package")
    let manifest: String

    /// Writes the package. The README names the package `shmbus`, and SwiftPM names a
    /// path dependency after its directory, so the checkout is reached through a
    /// symbolic link called `shmbus`: the README's `.product(…, package: "shmbus")`
    /// then resolves as it would for a newcomer.
    init(readmeManifest: String, programs: [String]) throws {
        let files = FileManager.default
        let checkout = Self.root.appendingPathComponent("shmbus")
        try files.createDirectory(at: Self.root, withIntermediateDirectories: true)
        if (try? files.destinationOfSymbolicLink(atPath: checkout.path)) != BuiltProducts.repositoryRoot.path {
            try? files.removeItem(at: checkout)
            try files.createSymbolicLink(atPath: checkout.path, withDestinationPath: BuiltProducts.repositoryRoot.path)
        }
        let (local, readmeTargets) = try Self.localManifest(from: readmeManifest, checkout: checkout.path)
        // (In Programs/, not Snippets/: SwiftPM takes a Snippets folder for its own
        // snippet programs, which get no dependencies.)
        var manifest = local + "\n// Added by ReadmeSnippetTests: one executable per README program.\n"
        for index in programs.indices {
            manifest += """
                package.targets.append(.executableTarget(
                    name: "ReadmeSnippet\(index + 1)", dependencies: [.product(name: "ShmBus", package: "shmbus")],
                    path: "Programs/\(index + 1)", swiftSettings: [.unsafeFlags(["-warnings-as-errors"])]))

                """
        }
        self.manifest = manifest

        // Files are rewritten only when they changed and the build directory is kept,
        // so a second run rebuilds only what the README changed.
        try files.createDirectory(at: directory, withIntermediateDirectories: true)
        try Self.writeIfChanged(manifest, to: directory.appendingPathComponent("Package.swift"))
        var sources: [String: String] = [:]
        for target in readmeTargets {
            // The README's own target only has to see the product it depends on.
            sources["Sources/\(target)"] = "import ShmBus\n"
        }
        for (index, program) in programs.enumerated() { sources["Programs/\(index + 1)"] = program }
        for folder in ["Sources", "Programs"] {
            for stale in (try? files.contentsOfDirectory(atPath: directory.appendingPathComponent(folder).path)) ?? []
            where sources["\(folder)/\(stale)"] == nil {
                try files.removeItem(at: directory.appendingPathComponent("\(folder)/\(stale)"))
            }
        }
        for (path, text) in sources {
            try Self.writeIfChanged(text, to: directory.appendingPathComponent("\(path)/main.swift"))
        }
        // The versions this checkout builds with, so that resolving picks the same
        // (from the machine's mirror, never anything new).
        let resolved = BuiltProducts.repositoryRoot.appendingPathComponent("Package.resolved")
        if let pins = try? String(contentsOf: resolved, encoding: .utf8) {
            try Self.writeIfChanged(pins, to: directory.appendingPathComponent("Package.resolved"))
        }
    }

    /// The README's manifest with its dependency on ShmBus pointed at `checkout`, and
    /// the executable targets it declares.
    static func localManifest(from readme: String, checkout: String) throws(Problem) -> (String, [String]) {
        let dependency = /\.package\(\s*url:\s*"[^"]*\/shmbus(\.git)?"[^)]*\)/
        guard readme.contains(dependency) else { throw .noDependencyLine }
        let local = readme.replacing(dependency, with: ".package(path: \"\(checkout)\")")
        let targets = local.matches(of: /\.executableTarget\(\s*name:\s*"([^"]+)"/).map { String($0.output.1) }
        return (local, targets)
    }

    /// Builds every target. `swift build` resolves the dependencies of the checkout
    /// through git, which reads github.com from the machine's mirror.
    func build() async throws -> (ChildProcess.Termination, String, String) {
        try await BuiltProducts.run(
            "swift",
            ["build", "--package-path", directory.path, "--scratch-path", Self.root.appendingPathComponent("scratch").path])
    }

    func describe() -> String { "Package.swift as built:\n\(manifest)" }

    /// Keeps the file's date when nothing changed, so that SwiftPM neither loads the
    /// manifest again nor recompiles the file.
    private static func writeIfChanged(_ text: String, to url: URL) throws {
        if (try? String(contentsOf: url, encoding: .utf8)) == text { return }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
    }
}
