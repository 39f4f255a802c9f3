//! Automatic compaction, etcd's two modes (`--auto-compaction-mode`):
//!
//! * `periodic`: keep `retention` worth of history. The current revision is sampled ten
//!   times per interval (interval = the retention, at most one hour, as etcd does); each
//!   interval, history is compacted to the newest sample at least `retention` old.
//! * `revision`: keep the last `retention` revisions, checked every five minutes.

use std::collections::VecDeque;
use std::sync::Weak;
use std::time::{Duration, Instant};

use mnemo_proto::etcdserverpb::CompactionRequest;

use super::EtcdServer;
use crate::config::AutoCompaction;
use crate::error::Error;

const REVISION_MODE_CHECK: Duration = Duration::from_secs(5 * 60);

/// Which revision to compact to, given samples `(taken at, revision)` oldest first.
pub(crate) fn periodic_target(
    samples: &VecDeque<(Instant, i64)>,
    now: Instant,
    retention: Duration,
) -> Option<i64> {
    samples
        .iter()
        .rev()
        .find(|(at, _)| now.saturating_duration_since(*at) >= retention)
        .map(|&(_, rev)| rev)
}

/// Runs until the server is dropped.
pub(crate) async fn run(server: Weak<EtcdServer>, mode: AutoCompaction) {
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let (tick, retention) = match mode {
        AutoCompaction::Periodic(r) => (r.min(Duration::from_secs(3600)) / 10, r),
        AutoCompaction::Revision(_) => (REVISION_MODE_CHECK, Duration::ZERO),
    };
    let tick = tick.max(Duration::from_millis(100));
    let mut ticks = 0u64;
    loop {
        tokio::time::sleep(tick).await;
        let Some(server) = server.upgrade() else {
            return;
        };
        if !server.is_leader() {
            samples.clear();
            continue;
        }
        let current = server.store.current_revision();
        let target = match mode {
            AutoCompaction::Revision(keep) => {
                Some(current - i64::try_from(keep).unwrap_or(i64::MAX))
            }
            AutoCompaction::Periodic(_) => {
                let now = Instant::now();
                samples.push_back((now, current));
                ticks += 1;
                let target = if ticks.is_multiple_of(10) {
                    periodic_target(&samples, now, retention)
                } else {
                    None
                };
                while samples.len() > 1
                    && samples
                        .get(1)
                        .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= retention)
                {
                    samples.pop_front();
                }
                target
            }
        };
        let Some(target) = target.filter(|&t| t > server.store.compact_revision()) else {
            continue;
        };
        let req = CompactionRequest {
            revision: target,
            physical: false,
        };
        match server.compact(req).await {
            Ok(_) => tracing::info!(revision = target, "auto-compacted"),
            Err(Error::Compacted) => {}
            Err(e) => tracing::warn!(revision = target, error = %e, "auto-compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_target_is_the_newest_sample_old_enough() {
        let t0 = Instant::now();
        let s = |secs: u64, rev| (t0 + Duration::from_secs(secs), rev);
        let samples: VecDeque<_> = [s(0, 10), s(6, 20), s(12, 30), s(18, 40)].into();
        let at = t0 + Duration::from_secs(20);
        assert_eq!(
            periodic_target(&samples, at, Duration::from_secs(10)),
            Some(20)
        );
        assert_eq!(periodic_target(&samples, at, Duration::from_secs(30)), None);
        assert_eq!(
            periodic_target(&samples, at, Duration::from_secs(2)),
            Some(40)
        );
    }
}
