//! The sync thread: catches unsynced watchers up from history.
//!
//! Each pass hands pending responses to queues that have room, then reads the next
//! chunk of every other unsynced watcher's history without the hub lock, and queues
//! it under the lock. The lock is where the hand-over to the live stream happens: a
//! watcher whose next revision passes the hub's revision joins the synced index in the
//! same critical section, so the next `notify` reaches it and no revision is queued
//! twice or skipped.

use mnemo_proto::mvccpb::Event;

use super::{event_revision, HubConfig, HubState, KeyRange, Shared, StreamItem, WatchUpdate};
use crate::error::Error;

pub(super) fn run_sync_thread(shared: &Shared) {
    while shared.signal.wait() {
        while sync_pass(shared) && !shared.signal.is_shutdown() {}
    }
}

struct FetchJob {
    watcher: u64,
    next_rev: i64,
    range: KeyRange,
}

enum Fetched {
    /// Events in `[next_rev, through]` (and possibly later ones, to be ignored).
    Events {
        events: Vec<Event>,
        through: i64,
    },
    Compacted(i64),
    Failed(Error),
}

/// One round over the unsynced watchers: hand pending responses to queues that have
/// room, read the next chunk of history for the others. True when anything moved.
fn sync_pass(shared: &Shared) -> bool {
    let mut moved = false;
    let mut jobs = Vec::new();
    {
        let mut st = shared.state.lock();
        let revision = st.revision;
        let keys: Vec<u64> = st.unsynced.iter().copied().collect();
        let mut now_synced = Vec::new();
        for key in keys {
            let Some(w) = st.watchers.get_mut(&key) else {
                continue;
            };
            if let Some(update) = w.pending.take() {
                match w.outbox.push_bounded(update) {
                    Ok(()) => {
                        w.quiet = false;
                        moved = true;
                    }
                    Err(update) => {
                        w.pending = Some(update);
                        continue;
                    }
                }
            }
            if w.next_rev > revision {
                now_synced.push(key);
            } else {
                jobs.push(FetchJob {
                    watcher: key,
                    next_rev: w.next_rev,
                    range: w.range.clone(),
                });
            }
        }
        for key in now_synced {
            st.make_synced(key);
        }
        st.flush_deferred_progress();
    }
    for job in jobs {
        let fetched = fetch(shared, &job);
        let mut st = shared.state.lock();
        moved |= apply_fetched(&mut st, &shared.config, &job, fetched);
    }
    moved
}

/// Reads the next chunk of a watcher's history, without the hub lock.
fn fetch(shared: &Shared, job: &FetchJob) -> Fetched {
    let history = &shared.history;
    let compact = history.compact_revision();
    if job.next_rev < compact {
        return Fetched::Compacted(compact);
    }
    // Everything up to `current` is committed before the read starts, so the read
    // holds all of it.
    let current = history.current_revision();
    let (key, end) = job.range.bounds();
    let mut limit = shared.config.catch_up_events.max(1);
    loop {
        match history.events_since(job.next_rev, key, end, limit) {
            Err(Error::Compacted) => return Fetched::Compacted(history.compact_revision()),
            Err(e) => return Fetched::Failed(e),
            Ok(mut events) => {
                if events.len() < limit {
                    return Fetched::Events {
                        events,
                        through: current,
                    };
                }
                // The read stopped at `limit`: its last revision may be cut short, so
                // it waits for the next read.
                let last = events
                    .last()
                    .map_or(job.next_rev, |e| event_revision(e, job.next_rev));
                events.retain(|e| event_revision(e, last) < last);
                if !events.is_empty() {
                    return Fetched::Events {
                        events,
                        through: (last - 1).min(current),
                    };
                }
                // One revision holds more events than the limit: read it whole.
                limit = limit.saturating_mul(2);
            }
        }
    }
}

/// Queues what a read found, under the hub lock. True when the watcher moved.
fn apply_fetched(st: &mut HubState, config: &HubConfig, job: &FetchJob, fetched: Fetched) -> bool {
    let revision = st.revision;
    let Some(w) = st.watchers.get_mut(&job.watcher) else {
        return false; // canceled meanwhile
    };
    if w.synced || w.pending.is_some() || w.next_rev != job.next_rev {
        return false;
    }
    let (events, through) = match fetched {
        Fetched::Compacted(compact_revision) => {
            st.end_watcher(job.watcher, |w| StreamItem::Compacted {
                watch_id: w.id,
                compact_revision,
            });
            return true;
        }
        Fetched::Failed(e) => {
            tracing::warn!(error = %e, "watch: reading history failed; canceling the watcher");
            st.end_watcher(job.watcher, |w| StreamItem::Canceled {
                watch_id: w.id,
                revision,
                reason: e.to_string(),
            });
            return true;
        }
        Fetched::Events { events, through } => (events, through.min(revision)),
    };
    if through < job.next_rev {
        tracing::warn!(
            next = job.next_rev,
            through,
            "watch: history is behind the hub; catch-up waits"
        );
        return false;
    }

    let mut through = through;
    let mut kept = Vec::new();
    let mut revisions = 0;
    let mut last_rev = None;
    for ev in &events {
        let rev = event_revision(ev, job.next_rev);
        if rev < job.next_rev {
            continue;
        }
        if rev > through {
            break;
        }
        if last_rev != Some(rev) {
            if revisions == config.max_revisions_per_response.max(1) {
                through = rev - 1;
                break;
            }
            revisions += 1;
            last_rev = Some(rev);
        }
        let in_range = ev.kv.as_ref().is_some_and(|kv| w.range.contains(&kv.key));
        if in_range && w.wants(ev) {
            kept.push(w.shape(ev));
        }
    }
    w.next_rev = through + 1;
    if !kept.is_empty() {
        let update = WatchUpdate {
            watch_id: w.id,
            revision: through,
            events: kept,
            fragment: w.fragment,
        };
        match w.outbox.push_bounded(update) {
            Ok(()) => w.quiet = false,
            Err(update) => w.pending = Some(update),
        }
    }
    if w.pending.is_none() && w.next_rev > revision {
        st.make_synced(job.watcher);
        st.flush_deferred_progress();
    }
    true
}
