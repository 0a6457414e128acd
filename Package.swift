// swift-tools-version:6.0
import PackageDescription

/// Caravan: distributed LLaMA-family inference over ZeroMQ.
///
/// Dependencies point downward (a module uses only modules on the lines below its own):
///   executables: caravan, caravanctl, caravan-coordinator, caravan-worker, caravan-openai
///   -> CaravanCLI, CaravanctlCLI, CoordinatorCLI, WorkerCLI, OpenAICLI (each executable's command
///      line: flags, their checks, options into configurations; the executable is a main.swift)
///   -> Coordinator, Worker (daemons), OpenAIServer (HTTP API), MetricsEndpoint (Prometheus),
///      DaemonSetup (config files, key files, join tokens, logging, the service group)
///   -> CaravanClient, CaravanTransport (the seam the daemons' logic talks through: ZeroMQ
///      sockets, or an in-memory hub in one process; how a node secures its sockets)
///   -> Planning (pure), Inference, CaravanWire (protobuf, tensor frames, steps and assignments)
///      -> ZeroMQ -> CZeroMQ, CaravanWire -> CChecksum, Fingerprint (SHA-256, model files)
///   -> Llama, Tokenizer, ChatTemplate, Sampling
///   -> GGUF, CKernels, CaravanCore.
///   CaravanTesting (tests only: an in-process cluster over the in-memory transport) ->
///   Coordinator, Worker, CaravanTransport, TestSupport.
let package = Package(
    name: "Caravan",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "caravan", targets: ["caravan"]),
        .executable(name: "caravan-openai", targets: ["caravan-openai"]),
        .executable(name: "caravan-worker", targets: ["caravan-worker"]),
        .executable(name: "caravan-coordinator", targets: ["caravan-coordinator"]),
        .executable(name: "caravanctl", targets: ["caravanctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        // MARK: Core values and seams (no I/O)
        .target(name: "CaravanCore"),

        // MARK: Model file
        .target(name: "GGUF"),

        // MARK: Hot loops in C (SIMD dispatched at run time)
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),

        // MARK: Model execution
        .target(name: "Llama", dependencies: ["CaravanCore", "GGUF", "CKernels"],
                // The forward pass is slow unoptimized; tests and debug runs use it heavily.
                swiftSettings: [.unsafeFlags(["-O"])]),

        // MARK: Text
        .target(name: "Tokenizer", dependencies: ["GGUF"], swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "ChatTemplate"),
        .target(name: "Sampling", dependencies: ["CaravanCore"]),

        // MARK: Generation (sessions, batching) over a forward engine seam
        .target(name: "Inference", dependencies: ["CaravanCore", "Llama", "Tokenizer", "Sampling"]),

        // MARK: Network
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"]),
        // CRC-32C in hardware (payload and model chunk checksums).
        .target(name: "CChecksum", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "CaravanWire", dependencies: [
            "CaravanCore", "Sampling", "ZeroMQ", "CChecksum",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ], swiftSettings: [.unsafeFlags(["-O"])]),
        // Send, receive, close: over ZeroMQ sockets or in memory (tests).
        .target(name: "CaravanTransport", dependencies: ["ZeroMQ", "CaravanCore", .product(name: "Logging", package: "swift-log")]),

        // MARK: Planning (pure: who runs which layers; the on-paper planner)
        .target(name: "Planning", dependencies: ["CaravanCore", "GGUF", "Llama"]),

        // MARK: Model files by content (SHA-256, a file's fingerprint cached beside it)
        .target(name: "Fingerprint", swiftSettings: [.unsafeFlags(["-O"])]),

        // MARK: Cluster daemons
        .target(name: "Worker", dependencies: [
            "CaravanCore", "GGUF", "Llama", "Sampling", "CaravanWire", "ZeroMQ", "Fingerprint", "CaravanTransport",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "Coordinator", dependencies: [
            "CaravanCore", "GGUF", "Llama", "Tokenizer", "ChatTemplate", "Sampling", "Inference", "CaravanWire", "ZeroMQ", "Fingerprint",
            "Planning", "CaravanTransport",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: [.unsafeFlags(["-O"])]),

        .target(name: "CaravanClient", dependencies: ["CaravanCore", "CaravanWire", "ZeroMQ"]),

        // MARK: Setting a daemon up (config files, key files, join tokens, logging, the service group)
        .target(name: "DaemonSetup", dependencies: [
            "CaravanTransport", "ZeroMQ",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ],
                // Optimized: the fuzz tests parse thousands of config files, join tokens and key files.
                swiftSettings: [.unsafeFlags(["-O"])]),

        // MARK: Prometheus metrics over HTTP (`--metrics HOST:PORT` on the daemons)
        .target(name: "MetricsEndpoint", dependencies: [
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // MARK: OpenAI-compatible HTTP front end (over CaravanClient)
        .target(name: "OpenAIServer", dependencies: [
            "CaravanClient", "CaravanCore", "ZeroMQ",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // MARK: Command lines (flags, their checks, options into configurations); each executable
        // is a `main.swift` that calls its library's `main()`
        .target(name: "CaravanCLI", dependencies: [
            "CaravanCore", "GGUF", "Llama", "Tokenizer", "ChatTemplate", "Sampling", "Inference",
            "CaravanClient", "CaravanWire", "CaravanTransport", "DaemonSetup",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "OpenAICLI", dependencies: [
            "OpenAIServer", "CaravanTransport", "DaemonSetup", "ZeroMQ", "MetricsEndpoint",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "WorkerCLI", dependencies: [
            "Worker", "ZeroMQ", "CaravanTransport", "DaemonSetup", "MetricsEndpoint",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "CoordinatorCLI", dependencies: [
            "Coordinator", "CaravanWire", "ZeroMQ", "CaravanTransport", "DaemonSetup", "MetricsEndpoint",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "CaravanctlCLI", dependencies: [
            "CaravanClient", "CaravanCore", "CaravanWire", "CaravanTransport", "DaemonSetup", "Planning", "GGUF", "ZeroMQ",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),

        // MARK: Executables
        .executableTarget(name: "caravan", dependencies: ["CaravanCLI"]),
        .executableTarget(name: "caravan-openai", dependencies: ["OpenAICLI"]),
        .executableTarget(name: "caravan-worker", dependencies: ["WorkerCLI"]),
        .executableTarget(name: "caravan-coordinator", dependencies: ["CoordinatorCLI"]),
        .executableTarget(name: "caravanctl", dependencies: ["CaravanctlCLI"]),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["GGUF"], path: "Tests/TestSupport"),
        .testTarget(name: "CaravanCoreTests", dependencies: ["CaravanCore"]),
        .testTarget(name: "CChecksumTests", dependencies: ["CChecksum"]),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "TestSupport"]),
        .testTarget(name: "CKernelsTests", dependencies: ["CKernels", "TestSupport"]),
        .testTarget(name: "LlamaTests", dependencies: ["Llama", "GGUF", "CKernels", "TestSupport"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "Llama", "Tokenizer", "Sampling", "TestSupport"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "GGUF", "TestSupport"]),
        .testTarget(name: "ChatTemplateTests", dependencies: ["ChatTemplate", "GGUF", "TestSupport"]),
        .testTarget(name: "SamplingTests", dependencies: ["Sampling"]),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ"]),
        .testTarget(name: "CaravanWireTests", dependencies: ["CaravanWire", "CaravanCore", "Sampling", "ZeroMQ", "TestSupport"]),
        .testTarget(name: "FingerprintTests", dependencies: ["Fingerprint"]),
        .testTarget(name: "DaemonSetupTests", dependencies: ["DaemonSetup", "CaravanTransport", "ZeroMQ", "TestSupport"]),
        .testTarget(name: "WorkerTests", dependencies: [
            "Worker", "CaravanTransport", "CaravanTesting", "Fingerprint", "CaravanCore", "CaravanWire", "Sampling", "Llama", "GGUF",
            "ZeroMQ", "TestSupport",
        ]),
        .testTarget(name: "CoordinatorTests", dependencies: [
            "Coordinator", "Planning", "Fingerprint", "CaravanctlCLI", "CaravanWire", "CaravanTransport", "CaravanTesting", "Inference", "Llama", "GGUF",
            "Tokenizer", "ChatTemplate", "TestSupport",
        ]),
        .testTarget(name: "PlanningTests", dependencies: ["Planning", "CaravanCore", "GGUF", "TestSupport"]),
        .testTarget(name: "OpenAIServerTests", dependencies: ["OpenAIServer", "CaravanCore", "CaravanWire", "ZeroMQ"]),
        .testTarget(name: "CaravanTransportTests", dependencies: [
            "CaravanTransport", "CaravanCore", "ZeroMQ", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "CaravanClientTests", dependencies: ["CaravanClient", "CaravanCore", "CaravanWire", "ZeroMQ"]),
        .testTarget(name: "MetricsEndpointTests", dependencies: ["MetricsEndpoint"]),
        .testTarget(name: "CaravanctlCLITests", dependencies: [
            "CaravanctlCLI", "CaravanCore", "CaravanWire", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        .testTarget(name: "CaravanCLITests", dependencies: ["CaravanCLI", "CaravanCore"]),
        .testTarget(name: "OpenAICLITests", dependencies: ["OpenAICLI"]),
        .testTarget(name: "WorkerCLITests", dependencies: ["WorkerCLI", "DaemonSetup", "Worker"]),
        .testTarget(name: "CoordinatorCLITests", dependencies: ["CoordinatorCLI", "Coordinator"]),
        // An in-process cluster (coordinator and workers over the in-memory transport) for tests.
        .target(name: "CaravanTesting", dependencies: [
            "Coordinator", "Worker", "CaravanTransport", "CaravanWire", "Fingerprint", "ZeroMQ", "TestSupport",
            "CaravanCore", "GGUF", "Inference", "Llama", "Tokenizer", "Planning",
            .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/CaravanTesting"),
        .testTarget(name: "CaravanTestingTests", dependencies: [
            "CaravanTesting", "CaravanTransport", "CaravanWire", "Coordinator", "Worker", "Inference", "Llama", "Tokenizer",
            "GGUF", "ZeroMQ", "TestSupport",
        ]),
        .testTarget(name: "ClusterTests", dependencies: ["CaravanClient", "CaravanCore", "CaravanWire", "ZeroMQ", "Llama", "GGUF", "Tokenizer", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
