//! Latency histograms with etcd's buckets, for the server's `/metrics`
//! (`etcd_disk_wal_fsync_duration_seconds`, `etcd_disk_backend_commit_duration_seconds`).
//!
//! Lock-free: one relaxed atomic add per bucket hit, one for the count and one for the
//! sum (in nanoseconds). A snapshot read while observations land may be off by the
//! observations in flight, as Prometheus' own client allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of etcd's disk latency buckets, in seconds: 1 ms doubling to 8.192 s
/// (Go's `prometheus.ExponentialBuckets(0.001, 2, 14)`).
pub const DISK_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A histogram over [`DISK_BUCKETS`].
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    buckets: [AtomicU64; DISK_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// What a histogram holds at one moment, in Prometheus' shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ascending.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DISK_BUCKETS.partition_point(|&b| b < secs);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let buckets = DISK_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| {
                running += n.load(Ordering::Relaxed);
                (bound, running)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_prometheus_buckets() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(500)); // <= 0.001
        h.observe(Duration::from_millis(1)); // le is inclusive: <= 0.001
        h.observe(Duration::from_millis(3)); // <= 0.004
        h.observe(Duration::from_secs(20)); // above every bound: only +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), DISK_BUCKETS.len());
        assert_eq!(s.buckets[0], (0.001, 2));
        assert_eq!(s.buckets[1], (0.002, 2));
        assert_eq!(s.buckets[2], (0.004, 3));
        assert_eq!(s.buckets.last(), Some(&(8.192, 3)));
        assert!((s.sum_seconds - 20.0045).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
