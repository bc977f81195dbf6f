//! Prometheus metrics: request counts and latency per route, kept in the router's state.

use std::collections::{BTreeMap, HashMap};
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

/// One method's requests on one route: counts by status, and their latency.
#[derive(Debug, Default)]
struct Counted {
    statuses: BTreeMap<u16, u64>,
    latency: Series,
}

/// Request metrics of this node.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By route, then by method (one of `METHODS` or `other`). A request looks its series up by
    /// the route's text and allocates only the first time the route is seen. The routes are the
    /// router's own patterns, so FNV (`keyward_core::fnv`) hashes them.
    routes: Mutex<HashMap<String, Methods, keyward_core::fnv::Fnv>>,
}

/// One route's series, by method.
type Methods = Vec<(&'static str, Counted)>;

const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

impl Metrics {
    /// Records one request. Methods outside HTTP's standard set count as `other`, so clients cannot
    /// grow the series without bound.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = METHODS.iter().find(|it| **it == method).copied().unwrap_or("other");
        let seconds = elapsed.as_secs_f64();
        let mut routes = self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let methods = match routes.get_mut(route) {
            Some(methods) => methods,
            None => routes.entry(route.to_owned()).or_default(),
        };
        let counted = match methods.iter().position(|(it, _)| *it == method) {
            Some(idx) => &mut methods[idx].1,
            None => {
                methods.push((method, Counted::default()));
                &mut methods.last_mut().expect("just pushed").1
            }
        };
        *counted.statuses.entry(status).or_default() += 1;
        let series = &mut counted.latency;
        series.count += 1;
        series.sum_seconds += seconds;
        for (idx, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                series.buckets[idx] += 1;
            }
        }
    }

    /// The Prometheus text exposition of every series, sorted by method, then route.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let escape = |value: &str| value.replace('\\', "\\\\").replace('"', "\\\"");
        let routes = self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut series: Vec<(&str, &str, &Counted)> = routes
            .iter()
            .flat_map(|(route, methods)| {
                methods.iter().map(move |(method, counted)| (*method, route.as_str(), counted))
            })
            .collect();
        series.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out.push_str("# HELP keyward_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE keyward_http_requests_total counter\n");
        for (method, route, counted) in &series {
            for (status, count) in &counted.statuses {
                let _ = writeln!(
                    out,
                    "keyward_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP keyward_http_request_duration_seconds HTTP request latency by method and route.\n");
        out.push_str("# TYPE keyward_http_request_duration_seconds histogram\n");
        for (method, route, counted) in &series {
            let series = &counted.latency;
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
    fn series_are_counted_and_rendered_in_order() {
        let metrics = Metrics::default();
        metrics.record("POST", "/v1.0/users", 201, Duration::from_millis(3));
        metrics.record("GET", "/v1.0/users/{id}", 200, Duration::from_micros(200));
        metrics.record("GET", "/v1.0/users/{id}", 404, Duration::from_millis(20));
        metrics.record("GET", "/v1.0/users/{id}", 200, Duration::from_micros(300));
        metrics.record("GET", "/v1.0/groups", 200, Duration::from_secs(2));
        metrics.record("BREW", "/v1.0/groups", 405, Duration::from_micros(10));
        let text = metrics.render();
        let counts: Vec<&str> = text.lines().filter(|it| it.starts_with("keyward_http_requests_total{")).collect();
        assert_eq!(
            counts,
            [
                r#"keyward_http_requests_total{method="GET",route="/v1.0/groups",status="200"} 1"#,
                r#"keyward_http_requests_total{method="GET",route="/v1.0/users/{id}",status="200"} 2"#,
                r#"keyward_http_requests_total{method="GET",route="/v1.0/users/{id}",status="404"} 1"#,
                r#"keyward_http_requests_total{method="POST",route="/v1.0/users",status="201"} 1"#,
                r#"keyward_http_requests_total{method="other",route="/v1.0/groups",status="405"} 1"#,
            ]
        );
        let user_reads = r#"keyward_http_request_duration_seconds_bucket{method="GET",route="/v1.0/users/{id}","#;
        assert!(text.contains(&format!(r#"{user_reads}le="0.0005"}} 2"#)), "{text}");
        assert!(text.contains(&format!(r#"{user_reads}le="0.025"}} 3"#)), "{text}");
        assert!(text.contains(&format!(r#"{user_reads}le="+Inf"}} 3"#)), "{text}");
        let groups = r#"keyward_http_request_duration_seconds_bucket{method="GET",route="/v1.0/groups","#;
        assert!(text.contains(&format!(r#"{groups}le="1"}} 0"#)), "longer than every bucket: {text}");
        assert!(text.contains(r#"keyward_http_request_duration_seconds_count{method="GET",route="/v1.0/groups"} 1"#));
    }
}
