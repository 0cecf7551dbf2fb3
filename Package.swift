// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "ShmBus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DBus", targets: ["DBus"]),
        .library(name: "ShmBus", targets: ["ShmBus"]),
        .executable(name: "shmbus", targets: ["shmbus"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CDBus",
            pkgConfig: "dbus-1",
            providers: [.apt(["libdbus-1-dev"])]
        ),
        .target(name: "Locking"),
        .target(
            name: "CShmBusLinux",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(
            name: "DBus",
            dependencies: [
                "CDBus",
                "Locking",
                "CShmBusLinux",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "SharedSegments",
            dependencies: [
                "CShmBusLinux",
                "Locking",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The bus contract, generated from dbus/*.xml by shmbus-codegen (`make generate`),
        // plus the names, paths, structs and errors both sides share.
        .target(
            name: "ShmBusProtocol",
            dependencies: [
                "DBus",
                "SharedSegments",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "ShmBus",
            dependencies: [
                "DBus",
                "Locking",
                "SharedSegments",
                "ShmBusProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "ShmBusRegistry",
            dependencies: [
                "DBus",
                "Locking",
                "ShmBusProtocol",
                "SharedSegments",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "shmbus",
            dependencies: [
                "DBus",
                "ShmBus",
                "ShmBusRegistry",
                "SharedSegments",
                "CShmBusLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.embedInCode("Resources/org.shmbus.Registry1.service")]
        ),
        .executableTarget(name: "shmbus-codegen", dependencies: ["DBus"]),
        .executableTarget(
            name: "shmbus-segment-worker",
            dependencies: ["SharedSegments", "CShmBusLinux", .product(name: "SystemPackage", package: "swift-system")]
        ),
        .executableTarget(
            name: "shmbus-test-peer",
            dependencies: ["ShmBus", "DBus", "TestSupport"]
        ),
        .executableTarget(
            name: "segment-pipe-example",
            dependencies: ["SharedSegments", "DBus", "CShmBusLinux", .product(name: "SystemPackage", package: "swift-system")],
            path: "examples/segment-pipe"
        ),
        .executableTarget(
            name: "screenshot-publisher", dependencies: ["ShmBus", "DBus"], path: "examples/screenshot-publisher"),
        .executableTarget(
            name: "screenshot-viewer", dependencies: ["ShmBus", "DBus", "SharedSegments", "CShmBusLinux"],
            path: "examples/screenshot-viewer"),
        .executableTarget(name: "camera-publisher", dependencies: ["ShmBus", "DBus"], path: "examples/camera-publisher"),
        .executableTarget(
            name: "camera-viewer", dependencies: ["ShmBus", "DBus", "SharedSegments"], path: "examples/camera-viewer"),
        .target(
            name: "TestSupport",
            dependencies: ["DBus", "SharedSegments", "CShmBusLinux"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "SharedSegmentsTests",
            dependencies: ["SharedSegments", "CShmBusLinux", "Locking", "TestSupport", "shmbus-segment-worker", "segment-pipe-example"]
        ),
        .testTarget(
            name: "ShmBusTests",
            dependencies: [
                "ShmBus", "ShmBusProtocol", "ShmBusRegistry", "SharedSegments", "DBus", "CShmBusLinux", "Locking", "TestSupport",
                "shmbus", "shmbus-codegen",
                "shmbus-test-peer", "screenshot-publisher", "screenshot-viewer", "camera-publisher", "camera-viewer",
            ]
        ),
        .testTarget(
            name: "DBusTests",
            dependencies: ["DBus", "CShmBusLinux", "Locking", "TestSupport"],
            exclude: ["Interop/interop_client.py", "Interop/gio_peer.py"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
