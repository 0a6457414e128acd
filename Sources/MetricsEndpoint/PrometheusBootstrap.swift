import CoreMetrics
import Prometheus

/// Sets up swift-metrics with a Prometheus registry, once per process.
///
/// The cluster's modules record through the swift-metrics API only (`Counter`, `Gauge`, `Timer`,
/// `Recorder`); without this bootstrap those calls do nothing. The daemons call it when started
/// with `--metrics HOST:PORT` and serve the registry with ``MetricsServer``.
public enum PrometheusBootstrap {
    /// Histogram buckets (seconds) of Caravan's timers: from a fast decode step to a slow prefill.
    public static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    /// Bootstraps the global metrics system with a new registry and returns it. Call once, before
    /// any metric is created (a second bootstrap is a programmer error in swift-metrics).
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        factory.nameAndLabelSanitizer = { name, labels in
            (MetricNames.name(name), labels.map { (MetricNames.label($0.0), $0.1) })
        }
        MetricsSystem.bootstrap(factory)
        return registry
    }
}

/// Prometheus names for metrics recorded by libraries that use other conventions (Hummingbird's
/// `MetricsMiddleware` labels its metrics `hb.requests`, `http.route` and so on).
public enum MetricNames {
    /// Known library metrics under Caravan's names.
    static let renamed: [String: String] = [
        "hb.requests": "caravan_http_requests_total",
        "hb.request.errors": "caravan_http_request_errors_total",
        "http.server.request.duration": "caravan_http_request_duration_seconds",
        "http.server.active_requests": "caravan_http_active_requests",
    ]

    /// Known library labels under short names.
    static let renamedLabels: [String: String] = [
        "http.route": "route", "http.request.method": "method", "http.response.status_code": "status",
        "error.type": "status",
    ]

    /// A valid Prometheus metric name for `name`: a known library name mapped, otherwise every
    /// character outside `[a-zA-Z0-9_:]` replaced by `_` (and a leading digit prefixed).
    public static func name(_ name: String) -> String {
        renamed[name] ?? sanitized(name, colon: true)
    }

    /// A valid Prometheus label name for `label` (`[a-zA-Z_][a-zA-Z0-9_]*`).
    public static func label(_ label: String) -> String {
        renamedLabels[label] ?? sanitized(label, colon: false)
    }

    private static func sanitized(_ s: String, colon: Bool) -> String {
        var out = String(s.unicodeScalars.map { c -> Character in
            let ok = (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || (colon && c == ":")
            return ok ? Character(c) : "_"
        })
        if out.isEmpty || out.first!.isNumber { out = "_" + out }
        return out
    }
}
