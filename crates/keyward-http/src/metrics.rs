//! Prometheus metrics: request counts and latency per route, kept in the router's state.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 10] = [0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request metrics of this node.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Series>>,
}

impl Metrics {
    /// Records one request. Methods outside HTTP's standard set count as `other`, so clients cannot
    /// grow the series without bound.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
        let method = if METHODS.contains(&method) { method } else { "other" };
        {
            let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        }
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let series = latency.entry((method.to_owned(), route.to_owned())).or_default();
        series.count += 1;
        series.sum_seconds += seconds;
        for (idx, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                series.buckets[idx] += 1;
            }
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let escape = |value: &str| value.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP keyward_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE keyward_http_requests_total counter\n");
        for ((method, route, status), count) in
            self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
        {
            let _ = writeln!(
                out,
                "keyward_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(route)
            );
        }
        out.push_str("# HELP keyward_http_request_duration_seconds HTTP request latency by method and route.\n");
        out.push_str("# TYPE keyward_http_request_duration_seconds histogram\n");
        for ((method, route), series) in self.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (idx, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "keyward_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    series.buckets[idx]
                );
            }
            let _ =
                writeln!(out, "keyward_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", series.count);
            let _ = writeln!(out, "keyward_http_request_duration_seconds_sum{{{labels}}} {}", series.sum_seconds);
            let _ = writeln!(out, "keyward_http_request_duration_seconds_count{{{labels}}} {}", series.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.record("GET", "/v1.0/users", 200, Duration::from_micros(700));
        metrics.record("GET", "/v1.0/users", 200, Duration::from_millis(30));
        let text = metrics.render();
        assert!(
            text.contains("keyward_http_requests_total{method=\"GET\",route=\"/v1.0/users\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2"), "{text}");
        assert!(
            text.contains("keyward_http_request_duration_seconds_count{method=\"GET\",route=\"/v1.0/users\"} 2"),
            "{text}"
        );
    }
}
