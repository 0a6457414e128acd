import Foundation

/// Scrapes Prometheus endpoints and parses them with a real Prometheus text parser: the
/// `prometheus_client` Python package's (`Scripts/setup` installs it for the tests).
struct MetricsScrape {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// One sample: metric name (with `_bucket`, `_count`, `_sum` suffixes for histograms), labels, value.
    struct Sample: Decodable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// Samples of each scraped URL.
    var samples: [String: [Sample]]

    /// The value of `name` with exactly the labels `labels` at `url` (nil when absent).
    func value(_ url: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples[url]?.first { $0.name == name && $0.labels == labels }?.value
    }

    /// Every sample of `name` at `url`.
    func all(_ url: String, _ name: String) -> [Sample] { samples[url]?.filter { $0.name == name } ?? [] }

    /// The parser: fetches each URL, checks the Content-Type, parses the body and prints the samples as JSON.
    static let script = #"""
    import json, sys, urllib.request
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        sys.exit("the Python package prometheus_client is missing: run Scripts/setup (or pip install prometheus_client)")
    out = {}
    for url in sys.argv[1:]:
        with urllib.request.urlopen(url, timeout=10) as r:
            kind = r.headers.get("Content-Type", "")
            if not kind.startswith("text/plain"):
                sys.exit(f"{url}: Content-Type {kind!r} is not the text exposition format")
            text = r.read().decode("utf-8")
        out[url] = [{"name": s.name, "labels": s.labels, "value": s.value}
                    for family in text_string_to_metric_families(text) for s in family.samples]
    print(json.dumps(out))
    """#

    /// Scrapes `urls` once.
    static func scrape(_ urls: [String], in directory: URL) throws -> MetricsScrape {
        let run = try CLIRun.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", script] + urls, in: directory, timeout: 30)
        guard run.status == 0 else {
            throw Failure(description: "scraping \(urls) failed (status \(run.status)): \(run.stderr)")
        }
        return MetricsScrape(samples: try JSONDecoder().decode([String: [Sample]].self, from: Data(run.stdout.utf8)))
    }
}
