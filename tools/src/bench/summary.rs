//! A run's figures, printed as etcd's benchmark tool prints them (so numbers compare with
//! etcd's published ones) and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Percentiles reported, as etcd's tool reports them plus p99.9.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Error messages shown; the rest are counted.
const ERRORS_SHOWN: usize = 10;

/// The figures of one workload run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub name: String,
    /// Requests that succeeded.
    pub requests: u64,
    pub errors: u64,
    /// Distinct error messages and how often each occurred.
    pub error_kinds: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Latencies in seconds.
    pub fastest: f64,
    pub slowest: f64,
    pub average: f64,
    pub stddev: f64,
    /// (percentile, seconds).
    pub percentiles: Vec<(f64, f64)>,
    /// Ten buckets between fastest and slowest: (upper bound in seconds, count).
    pub buckets: Vec<(f64, u64)>,
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

impl Summary {
    pub fn new(name: &str, h: &Histogram<u64>, elapsed: Duration, errors: Vec<String>) -> Summary {
        let mut error_kinds = BTreeMap::new();
        for e in &errors {
            *error_kinds.entry(e.clone()).or_insert(0) += 1;
        }
        let n = h.len();
        let (lo, hi) = if n == 0 { (0, 0) } else { (h.min(), h.max()) };
        let mut buckets = Vec::new();
        if n > 0 {
            let width = (hi - lo).max(1);
            let mut counts = [0u64; 10];
            for v in h.iter_recorded() {
                let at = v.value_iterated_to().clamp(lo, hi);
                let i = (((at - lo) * 10) / width).min(9) as usize;
                counts[i] += v.count_at_value();
            }
            for (i, count) in counts.iter().enumerate() {
                let upper = lo + width * (i as u64 + 1) / 10;
                buckets.push((secs(upper.min(hi)), *count));
            }
        }
        Summary {
            name: name.to_string(),
            requests: n,
            errors: errors.len() as u64,
            error_kinds,
            elapsed,
            fastest: secs(lo),
            slowest: secs(hi),
            average: if n == 0 { 0.0 } else { h.mean() / 1e6 },
            stddev: if n == 0 { 0.0 } else { h.stdev() / 1e6 },
            percentiles: PERCENTILES
                .iter()
                .map(|&p| {
                    (
                        p,
                        if n == 0 {
                            0.0
                        } else {
                            secs(h.value_at_percentile(p))
                        },
                    )
                })
                .collect(),
            buckets,
        }
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.requests as f64 / s
        } else {
            0.0
        }
    }

    /// The latency at percentile `p` (one of [`PERCENTILES`]), in seconds.
    pub fn percentile(&self, p: f64) -> f64 {
        self.percentiles
            .iter()
            .find(|(q, _)| (*q - p).abs() < 1e-9)
            .map_or(0.0, |(_, v)| *v)
    }

    /// etcd's report layout: summary, response time histogram, latency distribution.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}:", self.name);
        let _ = writeln!(s, "Summary:");
        let _ = writeln!(s, "  Total:\t{:.4} secs.", self.elapsed.as_secs_f64());
        let _ = writeln!(s, "  Slowest:\t{:.4} secs.", self.slowest);
        let _ = writeln!(s, "  Fastest:\t{:.4} secs.", self.fastest);
        let _ = writeln!(s, "  Average:\t{:.4} secs.", self.average);
        let _ = writeln!(s, "  Stddev:\t{:.4} secs.", self.stddev);
        let _ = writeln!(s, "  Requests/sec:\t{:.4}", self.throughput());
        let _ = writeln!(s, "\nResponse time histogram:");
        let max = self
            .buckets
            .iter()
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0)
            .max(1);
        for (upper, count) in &self.buckets {
            let bar = "∎".repeat((count * 40 / max) as usize);
            let _ = writeln!(s, "  {upper:.4} [{count}]\t|{bar}");
        }
        let _ = writeln!(s, "\nLatency distribution:");
        for (p, v) in &self.percentiles {
            let _ = writeln!(s, "  {p}% in {v:.4} secs.");
        }
        if self.errors > 0 {
            let _ = writeln!(s, "\n{} errors:", self.errors);
            for (e, n) in self.error_kinds.iter().take(ERRORS_SHOWN) {
                let _ = writeln!(s, "  [{n}] {e}");
            }
        }
        s
    }

    pub fn json(&self) -> Value {
        let pct: serde_json::Map<String, Value> = self
            .percentiles
            .iter()
            .map(|(p, v)| (format!("p{p}"), json!(v)))
            .collect();
        json!({
            "name": self.name,
            "requests": self.requests,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "total_secs": self.elapsed.as_secs_f64(),
            "requests_per_sec": self.throughput(),
            "fastest_secs": self.fastest,
            "slowest_secs": self.slowest,
            "average_secs": self.average,
            "stddev_secs": self.stddev,
            "percentiles_secs": pct,
            "histogram": self.buckets.iter().map(|(u, c)| json!({"upper_secs": u, "count": c})).collect::<Vec<_>>(),
        })
    }
}

/// Figures of two runs of the same workload side by side, with `b / a` for each.
pub fn compare(a_name: &str, a: &Summary, b_name: &str, b: &Summary) -> (String, Value) {
    let rows: Vec<(&str, f64, f64)> = vec![
        ("requests/sec", a.throughput(), b.throughput()),
        ("average secs", a.average, b.average),
        ("p50 secs", a.percentile(50.0), b.percentile(50.0)),
        ("p90 secs", a.percentile(90.0), b.percentile(90.0)),
        ("p99 secs", a.percentile(99.0), b.percentile(99.0)),
        ("p99.9 secs", a.percentile(99.9), b.percentile(99.9)),
        ("slowest secs", a.slowest, b.slowest),
        ("errors", a.errors as f64, b.errors as f64),
    ];
    let ratio = |x: f64, y: f64| if x > 0.0 { Some(y / x) } else { None };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<14} {:>14} {:>14} {:>10}",
        "",
        a_name,
        b_name,
        format!("{b_name}/{a_name}")
    );
    let mut out = serde_json::Map::new();
    for (what, x, y) in &rows {
        let r = ratio(*x, *y);
        let _ = writeln!(
            s,
            "{what:<14} {x:>14.4} {y:>14.4} {:>10}",
            r.map_or("-".to_string(), |r| format!("{r:.2}x"))
        );
        out.insert(
            what.to_string(),
            json!({ a_name: x, b_name: y, "ratio": r }),
        );
    }
    (s, Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::{histogram, record};

    #[test]
    fn figures_follow_the_recorded_latencies() {
        let mut h = histogram();
        for ms in 1..=100u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let s = Summary::new(
            "put",
            &h,
            Duration::from_secs(2),
            vec!["x".into(), "x".into()],
        );
        assert_eq!(s.requests, 100);
        assert_eq!(s.errors, 2);
        assert_eq!(s.error_kinds["x"], 2);
        assert!((s.throughput() - 50.0).abs() < 1e-9);
        assert!(
            (s.percentile(50.0) - 0.050).abs() < 0.001,
            "{}",
            s.percentile(50.0)
        );
        assert!((s.percentile(99.0) - 0.099).abs() < 0.001);
        assert!((s.fastest - 0.001).abs() < 1e-4 && (s.slowest - 0.100).abs() < 1e-3);
        assert_eq!(s.buckets.iter().map(|(_, c)| c).sum::<u64>(), 100);
        assert!(s.text().contains("Requests/sec:\t50.0000"));
        assert!(s.text().contains("99.9% in"));
        let (text, json) = compare("a", &s, "b", &s);
        assert!(text.contains("1.00x"), "{text}");
        assert_eq!(json["requests/sec"]["ratio"], 1.0);
    }

    #[test]
    fn an_empty_run_has_no_latencies() {
        let s = Summary::new("none", &histogram(), Duration::from_secs(1), vec![]);
        assert_eq!(s.requests, 0);
        assert!(s.buckets.is_empty());
        assert_eq!(s.percentile(50.0), 0.0);
    }
}
