//! What the HTTP endpoints report: etcd's health check, and the figures behind
//! `/metrics` in Prometheus' text exposition format, under etcd's metric names where
//! etcd has one (docs/compat.md lists them).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mnemo_storage::histogram::HistogramSnapshot;
use mnemo_storage::wal::IoPath;

use super::{EtcdServer, ETCD_CLUSTER_VERSION, ETCD_VERSION};

/// How long the health check waits for a linearizable read (etcd: one second).
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Counters kept for `/metrics` that nothing else records.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub leader_changes: AtomicU64,
    pub health_success: AtomicU64,
    pub health_failures: AtomicU64,
}

impl EtcdServer {
    /// etcd 3.4's health check: no alarm raised, a leader known, and (unless
    /// `serializable`) a linearizable read answered within a second.
    pub async fn healthy(&self, serializable: bool) -> bool {
        let ok = self.store.alarms().is_empty()
            && self.has_leader()
            && (serializable
                || matches!(
                    tokio::time::timeout(HEALTH_READ_TIMEOUT, self.raft.read_index()).await,
                    Ok(Ok(_))
                ));
        let counter = if ok {
            &self.counters.health_success
        } else {
            &self.counters.health_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        ok
    }

    pub fn has_leader(&self) -> bool {
        self.raft.raft().metrics().borrow().current_leader.is_some()
    }

    /// Every metric, in Prometheus' text format (version 0.0.4).
    pub fn metrics_text(&self) -> String {
        let raft = self.raft.status();
        let hub = self.hub.stats();
        let wal = self.raft.wal_stats().unwrap_or_default();
        let counters = &self.counters;
        let flag = |b: bool| u64::from(b);
        let mut out = Exposition::default();

        out.gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            flag(raft.leader.is_some()),
        );
        out.gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            flag(raft.leader == Some(self.options.member_id)),
        );
        out.gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            flag(raft.is_learner),
        );
        out.counter(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            counters.leader_changes.load(Ordering::Relaxed),
        );
        // etcd reports raft indexes here (gauges, despite the names).
        out.gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            raft.commit_index.unwrap_or(0),
        );
        out.gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            raft.applied_index.unwrap_or(0),
        );
        out.gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            self.raft.proposed() as u64,
        );
        out.info(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
            &format!("{:x}", self.options.member_id),
        );
        out.info(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            ETCD_VERSION,
        );
        out.info(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
            cluster_version(ETCD_CLUSTER_VERSION),
        );
        out.gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            self.options.quota_backend_bytes,
        );
        out.counter(
            "etcd_server_health_success",
            "The total number of successful health checks",
            counters.health_success.load(Ordering::Relaxed),
        );
        out.counter(
            "etcd_server_health_failures",
            "The total number of failed health checks",
            counters.health_failures.load(Ordering::Relaxed),
        );

        let db_size = self.store.db_size();
        out.gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            db_size,
        );
        let usage = self.store.usage();
        out.gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            usage.in_use_bytes,
        );
        out.gauge(
            "mnemo_backend_free_pages",
            "Free pages of the page file below its high-water mark, reused by later commits.",
            usage.free_pages,
        );
        out.gauge(
            "mnemo_backend_held_bytes",
            "Bytes of committed pages held in memory until a checkpoint writes them.",
            self.store.held_bytes() as u64,
        );
        out.gauge(
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            db_size,
        );
        out.gauge(
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys.",
            self.store.indexed_keys() as u64,
        );
        out.gauge_signed(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            self.store.current_revision(),
        );
        // etcd starts at -1 before any compaction; mnemo's store says 0.
        let compacted = match self.store.compact_revision() {
            0 => -1,
            rev => rev,
        };
        out.gauge_signed(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            compacted,
        );
        out.gauge(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers.",
            hub.watchers as u64,
        );
        out.gauge(
            "etcd_debugging_mvcc_slow_watcher_total",
            "Total number of unsynced slow watchers.",
            hub.unsynced as u64,
        );
        out.gauge(
            "mnemo_wal_io_uring",
            "Whether the WAL is written through io_uring (1) or pwrite + fdatasync (0).",
            flag(self.raft.io_path() == IoPath::IoUring),
        );
        out.counter(
            "mnemo_wal_fsyncs_total",
            "fdatasyncs of WAL batches.",
            wal.fsyncs,
        );
        out.counter(
            "mnemo_wal_batches_total",
            "WAL group-commit batches written.",
            wal.batches,
        );
        out.counter(
            "mnemo_wal_records_total",
            "WAL records made durable.",
            wal.records,
        );
        out.counter(
            "mnemo_wal_inline_batches_total",
            "WAL batches written and synced by the raft task itself (a lone member's lone write).",
            wal.inline,
        );
        if let Some(fsyncs) = self.raft.wal_fsync_latency() {
            out.histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                &fsyncs,
            );
        }
        out.histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            &self.store.commit_latency(),
        );
        out.histogram(
            "mnemo_backend_checkpoint_duration_seconds",
            "The latency distributions of checkpoints making the backend's commits durable.",
            &self.store.checkpoint_latency(),
        );
        self.grpc_stats.write_handled(&mut out.0);
        out.0
    }
}

/// `3.4.0` → `3.4`: etcd labels the cluster version with major.minor.
fn cluster_version(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((i, _)) => &version[..i],
        None => version,
    }
}

/// A Prometheus text exposition being written: `# HELP`, `# TYPE`, then the samples.
#[derive(Debug, Default)]
struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.0, "{name} {value}");
    }

    fn gauge_signed(&mut self, name: &str, help: &str, value: i64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.0, "{name} {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A histogram: cumulative `_bucket{le=…}` samples ending with `+Inf`, `_sum`, `_count`.
    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.header(name, help, "histogram");
        for (bound, n) in &h.buckets {
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(self.0, "{name}_sum {}", h.sum_seconds);
        let _ = writeln!(self.0, "{name}_count {}", h.count);
    }

    /// A gauge of 1 carrying its information in one label (etcd's `*_version`, `*_id`).
    /// The label value must need no escaping.
    fn info(&mut self, name: &str, help: &str, label: &str, value: &str) {
        debug_assert!(!value.contains(['"', '\\', '\n']));
        self.header(name, help, "gauge");
        let _ = writeln!(self.0, "{name}{{{label}=\"{value}\"}} 1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_version_is_major_minor() {
        assert_eq!(cluster_version("3.4.0"), "3.4");
        assert_eq!(cluster_version("3"), "3");
    }

    #[test]
    fn histograms_follow_the_text_format() {
        let h = mnemo_storage::histogram::LatencyHistogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        let mut e = Exposition::default();
        e.histogram("d_seconds", "Help.", &h.snapshot());
        let lines: Vec<&str> = e.0.lines().collect();
        assert_eq!(lines[1], "# TYPE d_seconds histogram");
        assert_eq!(lines[2], "d_seconds_bucket{le=\"0.001\"} 0");
        assert_eq!(lines[4], "d_seconds_bucket{le=\"0.004\"} 1");
        assert_eq!(lines[15], "d_seconds_bucket{le=\"8.192\"} 1");
        assert_eq!(lines[16], "d_seconds_bucket{le=\"+Inf\"} 2");
        assert_eq!(lines[17], "d_seconds_sum 9.003");
        assert_eq!(lines[18], "d_seconds_count 2");
    }

    #[test]
    fn exposition_lines_follow_the_text_format() {
        let mut e = Exposition::default();
        e.gauge("a_b", "Help.", 3);
        e.info("c", "Info.", "l", "v1");
        assert_eq!(
            e.0,
            "# HELP a_b Help.\n# TYPE a_b gauge\na_b 3\n# HELP c Info.\n# TYPE c gauge\nc{l=\"v1\"} 1\n"
        );
    }
}
