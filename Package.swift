// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "ShmBus",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DBus", targets: ["DBus"]),
        .library(name: "ShmBus", targets: ["ShmBus"]),
        // A private dbus-daemon and child processes, for tests and demos of programs
        // built on the libraries; not needed to use them.
        .library(name: "ShmBusTesting", targets: ["ShmBusTesting"]),
        .executable(name: "shmbus", targets: ["shmbus"]),
        // The contract generator: interface XML in, a typed proxy and service protocol out
        // (blob arguments become `Blob`).
        .executable(name: "shmbus-codegen", targets: ["shmbus-codegen"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        // The library's counters (swift-metrics) and the daemon's /metrics (swift-prometheus).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // `make docs`: builds the ShmBus DocC catalogue (`swift package generate-documentation`).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        // SHA-256 of bridged chunks (docs/BRIDGE.md, "Headers").
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
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
        // The package's Linux calls in Swift: the owned descriptor, the errno-carrying
        // error, memfd and seals, futex, eventfd, pipes, process spawning.
        .target(
            name: "ShmBusSystem",
            dependencies: [
                "CShmBusLinux",
                "Locking",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The benchmark's checksum, apart from the segment format's C code.
        .target(name: "CShmBusBench"),
        .target(
            name: "DBus",
            dependencies: [
                "CDBus",
                "Locking",
                "ShmBusSystem",
                .product(name: "DequeModule", package: "swift-collections"),
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
                "ShmBusSystem",
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
                "ShmBusSystem",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "ShmBus",
            dependencies: [
                "DBus",
                "Locking",
                "SharedSegments",
                "ShmBusPolicy",
                "ShmBusProtocol",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "ShmBusPolicy",
            dependencies: ["DBus", "ShmBusProtocol", "ShmBusSystem"]
        ),
        .target(
            name: "ShmBusRegistry",
            dependencies: [
                "DBus",
                "Locking",
                "ShmBusPolicy",
                "ShmBusProtocol",
                "ShmBusSystem",
                "SharedSegments",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "ShmBusTesting",
            dependencies: ["DBus", "ShmBus", "ShmBusSystem", "CShmBusLinux"]
        ),
        .executableTarget(
            name: "shmbus",
            dependencies: [
                "DBus",
                "ShmBus",
                "ShmBusRegistry",
                "ShmBusSystem",
                "ShmBusTesting",
                "SharedSegments",
                "CShmBusLinux",
                "CShmBusBench",
                "NATS",
                "ShmBusBridge",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [
                .embedInCode("Resources/org.shmbus.Registry1.service"), .embedInCode("Resources/org.shmbus.Keeper1.service"),
                .embedInCode("Resources/shmbus-registry.service"), .embedInCode("Resources/shmbus-keeper.service"),
            ]
        ),
        .executableTarget(name: "shmbus-codegen", dependencies: ["DBus"]),
        .executableTarget(
            name: "shmbus-segment-worker",
            dependencies: ["SharedSegments", "ShmBusSystem", "CShmBusLinux"]
        ),
        .executableTarget(
            name: "shmbus-test-peer",
            dependencies: [
                "ShmBus", "DBus", "ShmBusSystem", "SharedSegments", "CShmBusLinux", "TestSupport",
                .product(name: "CoreMetrics", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "segment-pipe-example",
            dependencies: ["SharedSegments", "ShmBusSystem", "CShmBusLinux"],
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
        // The example thumbnailer (examples/thumbnailer): its contract, generated from its
        // XML, a service that takes and returns blobs, and a client.
        .target(name: "ThumbnailerProtocol", dependencies: ["DBus", "ShmBus"], path: "examples/thumbnailer/Protocol"),
        .executableTarget(
            name: "thumbnailer-service", dependencies: ["ThumbnailerProtocol", "ShmBus", "DBus", "Locking"],
            path: "examples/thumbnailer/Service"),
        .executableTarget(
            name: "thumbnailer-client", dependencies: ["ThumbnailerProtocol", "ShmBus", "DBus"], path: "examples/thumbnailer/Client"),
        .target(
            name: "TestSupport",
            dependencies: ["DBus", "SharedSegments", "ShmBusSystem", "ShmBusTesting", "CShmBusLinux"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "ShmBusSystemTests",
            dependencies: ["ShmBusSystem", "CShmBusLinux", .product(name: "SystemPackage", package: "swift-system")]
        ),
        .testTarget(name: "BenchChecksumTests", dependencies: ["CShmBusBench"]),
        .testTarget(
            name: "SharedSegmentsTests",
            dependencies: ["SharedSegments", "ShmBusSystem", "ShmBusTesting", "CShmBusLinux", "Locking", "TestSupport", "shmbus-segment-worker", "segment-pipe-example"]
        ),
        .testTarget(
            name: "ShmBusTests",
            dependencies: [
                "ShmBus", "ShmBusPolicy", "ShmBusProtocol", "ShmBusRegistry", "SharedSegments", "DBus", "ShmBusSystem", "ShmBusTesting",
                "CShmBusLinux", "Locking", "TestSupport", "shmbus", "shmbus-codegen",
                "shmbus-test-peer", "screenshot-publisher", "screenshot-viewer", "camera-publisher", "camera-viewer",
                "ThumbnailerProtocol", "thumbnailer-service", "thumbnailer-client",
            ]
        ),
        .testTarget(
            name: "DBusTests",
            dependencies: ["DBus", "ShmBusSystem", "ShmBusTesting", "Locking", "TestSupport"],
            exclude: ["Interop/interop_client.py", "Interop/gio_peer.py"]
        ),
        // The NATS JetStream bridge (docs/BRIDGE.md): NATS.c (libnats-dev) as a system
        // library, its Swift layer, and the tests against real nats-servers.
        .systemLibrary(name: "CNATS", pkgConfig: "libnats", providers: [.apt(["libnats-dev"])]),
        .target(name: "NATS", dependencies: ["CNATS"]),
        .target(
            name: "ShmBusBridge",
            dependencies: [
                "NATS", "ShmBus", "SharedSegments", "DBus", "Locking",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "BridgeTests",
            dependencies: [
                "NATS", "ShmBusBridge", "DBus", "ShmBus", "SharedSegments", "ShmBusSystem", "ShmBusTesting", "CShmBusLinux", "TestSupport",
                "shmbus",
            ],
            exclude: ["PlainClient"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
