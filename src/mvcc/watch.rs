//! The watch hub: watchers keyed by key range, fed by every committed batch.
//!
//! etcd's model (mvcc/watchable_store.go), reworked so that no writer ever waits:
//!
//! * A watcher is **synced** when every event up to the hub's revision has been queued
//!   for it; synced watchers sit in an index by key range and [`WatchHub::notify`] hands
//!   them each revision's events directly.
//! * A watcher is **unsynced** when it still has history to read: it asked for a past
//!   start revision, or its stream's queue was full when `notify` had events for it.
//!   `notify` never touches unsynced watchers. A sync thread reads their events from
//!   [`History`] in bounded chunks, without the hub lock, and queues them; once a
//!   watcher's next revision passes the hub's revision it moves back to synced, under the
//!   same lock that `notify` takes, so the hand-over has no gap and no duplicate.
//! * Each stream (one gRPC Watch call) has one bounded queue for all its watchers,
//!   read by the stream's sender. Responses keep their order per watcher; created,
//!   canceled and progress responses go through the same queue, so a watcher's
//!   `created` precedes its events and a progress response follows every event it
//!   vouches for.
//!
//! Worked example: the hub is at revision 10, a client watches `a` from revision 3.
//! The watcher starts unsynced with next revision 3. The sync thread reads the history
//! (which is at 12: revisions 11 and 12 are committed but not yet notified), keeps
//! events 3..=10, queues them with header revision 10 and, under the lock, finds the
//! hub still at 10: the watcher joins the synced index with next revision 11. `notify`
//! for 11 and 12 then reaches it. Had `notify(11)` run between the read and the lock,
//! the hub would be at 11, the watcher would stay unsynced with next revision 11, and
//! the next read would fetch 11.
//!
//! Events of one revision always travel in one response (fragmentation, if the watcher
//! asked for it, happens later in the gRPC layer).

#[cfg(test)]
pub(crate) mod fake;
mod index;
mod outbox;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;

use mnemo_proto::etcdserverpb::watch_create_request::FilterType;
use mnemo_proto::etcdserverpb::WatchCreateRequest;
use mnemo_proto::mvccpb::event::EventType;
use mnemo_proto::mvccpb::Event;
use parking_lot::Mutex;

pub use index::KeyRange;
use index::WatcherIndex;
use outbox::{Outbox, Popped, SyncSignal};
use sync::run_sync_thread;

use super::Applied;
use crate::error::Error;

pub use super::History;

/// `watch_id` of a create request that lets the server choose (etcd's `AutoWatchID`).
pub const AUTO_WATCH_ID: i64 = 0;
/// `watch_id` of responses that belong to no watcher: refused creates and progress
/// responses for a whole stream (etcd's `InvalidWatchID`).
pub const INVALID_WATCH_ID: i64 = -1;

/// Tuning of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Event and progress responses one stream may have queued before its watchers
    /// are moved aside to catch up from history (etcd: 128).
    pub stream_capacity: usize,
    /// Events read from history per catch-up step of one watcher.
    pub catch_up_events: usize,
    /// Revisions per catch-up response (etcd: 1000).
    pub max_revisions_per_response: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            stream_capacity: 128,
            catch_up_events: 1024,
            max_revisions_per_response: 1000,
        }
    }
}

/// What a stream's sender receives, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A watcher exists; comes before any of its updates. `revision` is the hub's.
    Created { watch_id: i64, revision: i64 },
    /// A create request was refused. etcd answers with `created` and `canceled` both
    /// set, watch id -1 and the reason.
    Rejected { reason: String, revision: i64 },
    /// A watcher is gone: canceled by the client (`reason` empty) or failed.
    Canceled {
        watch_id: i64,
        revision: i64,
        reason: String,
    },
    /// The watcher's next revision was compacted away; the watcher is gone (its id
    /// stays taken until the client cancels it, as in etcd).
    Compacted {
        watch_id: i64,
        compact_revision: i64,
    },
    /// Events, or a progress notification when `events` is empty.
    Update(WatchUpdate),
}

/// Events of one watcher (or a progress notification: no events; watch id -1 for a
/// whole stream).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WatchUpdate {
    pub watch_id: i64,
    /// The header revision: every event of this watcher up to here has been queued.
    pub revision: i64,
    pub events: Vec<Event>,
    /// The watcher accepts fragmented responses.
    pub fragment: bool,
}

/// Gauges and counters of the hub (etcd: `etcd_debugging_mvcc_watcher_total`,
/// `etcd_debugging_mvcc_slow_watcher_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    /// Live watchers.
    pub watchers: usize,
    /// Of which catching up from history.
    pub unsynced: usize,
    /// Times a synced watcher was moved aside because its stream's queue was full.
    pub moved_aside: u64,
}

impl HubStats {
    /// `(watchers, unsynced)`.
    pub fn counts(&self) -> (usize, usize) {
        (self.watchers, self.unsynced)
    }
}

/// Why a create request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchError {
    /// `start_revision < 0`; etcd answers with the compaction message.
    NegativeRevision,
    /// `key >= range_end`.
    EmptyRange,
    /// The client chose an id that its stream already uses.
    DuplicateId,
}

impl WatchError {
    /// etcd's `cancel_reason` text.
    pub fn reason(&self) -> String {
        match self {
            WatchError::NegativeRevision => Error::Compacted.to_string(),
            WatchError::EmptyRange => "mvcc: watcher range is empty".to_string(),
            WatchError::DuplicateId => {
                "mvcc: duplicate watch ID provided on the WatchStream".to_string()
            }
        }
    }
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

impl std::error::Error for WatchError {}

/// The watch hub. Create one per store, call [`WatchHub::notify`] after every
/// committed batch, open one [`WatchStream`] per client stream.
pub struct WatchHub {
    shared: Arc<Shared>,
    sync_thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.state.lock();
        f.debug_struct("WatchHub")
            .field("revision", &st.revision)
            .field("watchers", &st.watchers.len())
            .field("unsynced", &st.unsynced.len())
            .finish()
    }
}

struct Shared {
    history: Arc<dyn History>,
    config: HubConfig,
    state: Mutex<HubState>,
    signal: Arc<SyncSignal>,
}

#[derive(Default)]
struct HubState {
    /// The last notified revision.
    revision: i64,
    next_key: u64,
    watchers: HashMap<u64, Watcher>,
    synced: WatcherIndex,
    unsynced: BTreeSet<u64>,
    streams: HashMap<u64, StreamState>,
    /// Streams whose client asked for progress while some watcher was unsynced.
    deferred_progress: BTreeSet<u64>,
    moved_aside: u64,
    /// Watchers that asked for prev_kv (told to the history on every change).
    prev_kv_watchers: usize,
}

struct StreamState {
    outbox: Arc<Outbox>,
    /// Watch id → watcher; `None` once compacted or failed (the id stays taken until
    /// the client cancels it).
    ids: HashMap<i64, Option<u64>>,
    next_id: i64,
}

struct Watcher {
    stream: u64,
    id: i64,
    range: KeyRange,
    /// As requested; 0 = from now.
    start_rev: i64,
    /// The first revision not yet queued. Maintained for unsynced watchers and for
    /// synced ones that start in the future; a synced watcher otherwise has
    /// everything up to the hub's revision.
    next_rev: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// No events queued since the last progress tick.
    quiet: bool,
    synced: bool,
    /// An unsynced watcher's response that its full queue refused.
    pending: Option<WatchUpdate>,
    outbox: Arc<Outbox>,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        match EventType::try_from(ev.r#type) {
            Ok(EventType::Put) => !self.no_put,
            Ok(EventType::Delete) => !self.no_delete,
            Err(_) => true,
        }
    }

    /// The event as this watcher sees it: prev_kv only when asked for.
    fn shape(&self, ev: &Event) -> Event {
        Event {
            r#type: ev.r#type,
            kv: ev.kv.clone(),
            prev_kv: if self.prev_kv {
                ev.prev_kv.clone()
            } else {
                None
            },
        }
    }

    fn can_report_progress(&self, revision: i64) -> bool {
        // A progress response at `revision` tells the client to resume at
        // revision + 1; that must not be before the watcher's start.
        self.synced && revision + 1 >= self.start_rev
    }
}

fn event_revision(ev: &Event, fallback: i64) -> i64 {
    ev.kv.as_ref().map_or(fallback, |kv| kv.mod_revision)
}

fn progress(watch_id: i64, revision: i64) -> WatchUpdate {
    WatchUpdate {
        watch_id,
        revision,
        events: Vec::new(),
        fragment: false,
    }
}

impl WatchHub {
    pub fn new(history: Arc<dyn History>) -> WatchHub {
        WatchHub::with_config(history, HubConfig::default())
    }

    pub fn with_config(history: Arc<dyn History>, config: HubConfig) -> WatchHub {
        let state = HubState {
            revision: history.current_revision(),
            ..HubState::default()
        };
        history.set_watcher_counts(0, 0);
        let shared = Arc::new(Shared {
            history,
            config,
            state: Mutex::new(state),
            signal: Arc::new(SyncSignal::default()),
        });
        let for_thread = Arc::clone(&shared);
        let sync_thread = std::thread::Builder::new()
            .name("mnemo-watch-sync".to_string())
            .spawn(move || run_sync_thread(&for_thread))
            .expect("spawn the watch sync thread");
        WatchHub {
            shared,
            sync_thread: Some(sync_thread),
        }
    }

    /// Hands a committed batch to the watchers. Never waits for a reader; takes the
    /// hub lock for the time it takes to queue the events.
    pub fn notify(&self, applied: &Applied) {
        self.notify_inner(
            &applied.events,
            applied.revision,
            applied.prev_kv_omitted,
            applied.events_omitted,
        );
    }

    /// [`WatchHub::notify`] with the batch's parts: `events` in revision order (each
    /// event's revision is its `kv.mod_revision`), `revision` the store's revision
    /// after the batch.
    pub fn notify_events(&self, events: &[Event], revision: i64) {
        self.notify_inner(events, revision, false, false);
    }

    /// `prev_kv_omitted`: the events carry no prev_kv (the store was told no watcher
    /// wanted it); a watcher created since that does want it is moved aside and reads
    /// these revisions, with prev_kv, from history. `events_omitted`: the batch listed
    /// no events (the store was told there were no watchers); every watcher created
    /// since that waits for these revisions reads them from history.
    fn notify_inner(
        &self,
        events: &[Event],
        revision: i64,
        prev_kv_omitted: bool,
        events_omitted: bool,
    ) {
        let mut st = self.shared.state.lock();
        let mut moved_aside = false;
        if events_omitted && revision > st.revision {
            let waiting: Vec<u64> = st
                .watchers
                .iter()
                .filter(|(_, w)| w.synced && w.next_rev <= revision)
                .map(|(k, _)| *k)
                .collect();
            for key in waiting {
                moved_aside |= st.move_aside(key);
            }
        }
        let mut matched = Vec::new();
        let mut per_watcher: BTreeMap<u64, Vec<&Event>> = BTreeMap::new();
        let mut start = 0;
        while start < events.len() {
            let rev = event_revision(&events[start], revision);
            let mut end = start + 1;
            while end < events.len() && event_revision(&events[end], revision) == rev {
                end += 1;
            }
            if rev <= st.revision {
                // Already delivered (a replayed batch): synced watchers have it.
                start = end;
                continue;
            }
            per_watcher.clear();
            for ev in &events[start..end] {
                let Some(kv) = &ev.kv else { continue };
                matched.clear();
                st.synced.matches(&kv.key, &mut matched);
                for &w in &matched {
                    per_watcher.entry(w).or_default().push(ev);
                }
            }
            for (&w, evs) in &per_watcher {
                moved_aside |= st.deliver_live(w, rev, evs, prev_kv_omitted);
            }
            start = end;
        }
        if revision > st.revision {
            st.revision = revision;
        }
        st.flush_deferred_progress();
        drop(st);
        if moved_aside {
            self.shared.signal.wake();
        }
    }

    /// After the store was replaced wholesale (a raft snapshot was installed): every
    /// synced watcher catches up from the new history, as etcd's `Restore` does.
    pub fn resync_all(&self) {
        let new_rev = self.shared.history.current_revision();
        let mut guard = self.shared.state.lock();
        let st = &mut *guard;
        let old_rev = st.revision;
        st.revision = new_rev.max(old_rev);
        let synced: Vec<u64> = st
            .watchers
            .iter()
            .filter(|(_, w)| w.synced)
            .map(|(k, _)| *k)
            .collect();
        for key in synced {
            let Some(w) = st.watchers.get_mut(&key) else {
                continue;
            };
            let next = (old_rev + 1).max(w.start_rev).max(w.next_rev);
            w.next_rev = next;
            if next <= st.revision {
                w.synced = false;
                let range = w.range.clone();
                st.synced.remove(key, &range);
                st.unsynced.insert(key);
            }
        }
        drop(guard);
        self.shared.signal.wake();
    }

    /// Opens a stream: the control half creates and cancels watchers, the receiver
    /// yields what to send to the client.
    pub fn new_stream(&self) -> (WatchStream, WatchReceiver) {
        let outbox = Arc::new(Outbox::new(
            self.shared.config.stream_capacity,
            Arc::clone(&self.shared.signal),
        ));
        let mut st = self.shared.state.lock();
        let key = st.next_key();
        st.streams.insert(
            key,
            StreamState {
                outbox: Arc::clone(&outbox),
                ids: HashMap::new(),
                next_id: 0,
            },
        );
        drop(st);
        (
            WatchStream {
                shared: Arc::clone(&self.shared),
                key,
                outbox: Arc::clone(&outbox),
            },
            WatchReceiver { outbox },
        )
    }

    /// The last notified revision.
    pub fn revision(&self) -> i64 {
        self.shared.state.lock().revision
    }

    pub fn stats(&self) -> HubStats {
        let st = self.shared.state.lock();
        HubStats {
            watchers: st.watchers.len(),
            unsynced: st.unsynced.len(),
            moved_aside: st.moved_aside,
        }
    }
}

impl Drop for WatchHub {
    fn drop(&mut self) {
        // Without a hub, batches fill prev_kv for whoever reads `Applied::events`.
        self.shared
            .history
            .set_watcher_counts(usize::MAX, usize::MAX);
        self.shared.signal.shutdown();
        if let Some(t) = self.sync_thread.take() {
            let _ = t.join();
        }
    }
}

impl HubState {
    fn next_key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// Queues one revision's matching events for a synced watcher; a full queue moves
    /// the watcher aside with the response pending. True when moved aside.
    fn deliver_live(&mut self, key: u64, rev: i64, evs: &[&Event], prev_kv_omitted: bool) -> bool {
        let Some(w) = self.watchers.get_mut(&key) else {
            return false;
        };
        if rev < w.next_rev {
            return false; // starts later
        }
        if prev_kv_omitted && w.prev_kv && evs.iter().any(|ev| w.wants(ev)) {
            // Catch up from history, which has the previous values.
            w.next_rev = rev;
            return self.move_aside(key);
        }
        let events: Vec<Event> = evs
            .iter()
            .filter(|ev| w.wants(ev))
            .map(|ev| w.shape(ev))
            .collect();
        if events.is_empty() {
            return false;
        }
        let update = WatchUpdate {
            watch_id: w.id,
            revision: rev,
            events,
            fragment: w.fragment,
        };
        match w.outbox.push_bounded(update) {
            Ok(()) => {
                w.quiet = false;
                false
            }
            Err(update) => {
                w.pending = Some(update);
                w.next_rev = rev + 1;
                self.move_aside(key)
            }
        }
    }

    /// Moves a synced watcher to the sync thread, which sends it what history holds from
    /// its `next_rev` on. True when it was moved.
    fn move_aside(&mut self, key: u64) -> bool {
        let Some(w) = self.watchers.get_mut(&key) else {
            return false;
        };
        w.synced = false;
        let range = w.range.clone();
        self.synced.remove(key, &range);
        self.unsynced.insert(key);
        self.moved_aside += 1;
        true
    }

    /// Tells the store how many watchers there are (see [`History::set_watcher_counts`]).
    fn tell_counts(&self, history: &dyn History) {
        history.set_watcher_counts(self.watchers.len(), self.prev_kv_watchers);
    }

    fn make_synced(&mut self, key: u64) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        debug_assert!(w.pending.is_none() && w.next_rev > self.revision);
        w.synced = true;
        let range = w.range.clone();
        self.unsynced.remove(&key);
        self.synced.insert(key, &range);
    }

    /// Unlinks a watcher from the groups; the stream's id table is the caller's.
    fn remove_watcher(&mut self, key: u64) -> Option<Watcher> {
        let w = self.watchers.remove(&key)?;
        if w.prev_kv {
            self.prev_kv_watchers -= 1;
        }
        if w.synced {
            self.synced.remove(key, &w.range);
        } else {
            self.unsynced.remove(&key);
        }
        Some(w)
    }

    /// Ends a watcher without ending its id: compaction or a failed history read.
    fn end_watcher(&mut self, key: u64, item: impl FnOnce(&Watcher) -> StreamItem) {
        if let Some(w) = self.remove_watcher(key) {
            if let Some(s) = self.streams.get_mut(&w.stream) {
                s.ids.insert(w.id, None);
            }
            w.outbox.push_control(item(&w));
        }
        self.flush_deferred_progress();
    }

    /// Every watcher of the stream has everything up to the hub's revision queued.
    fn stream_synced(&self, stream: u64) -> bool {
        let Some(s) = self.streams.get(&stream) else {
            return true;
        };
        s.ids.values().flatten().all(|k| {
            self.watchers
                .get(k)
                .is_none_or(|w| w.can_report_progress(self.revision))
        })
    }

    fn flush_deferred_progress(&mut self) {
        if self.deferred_progress.is_empty() {
            return;
        }
        let ready: Vec<u64> = self
            .deferred_progress
            .iter()
            .copied()
            .filter(|s| self.stream_synced(*s))
            .collect();
        for s in ready {
            self.deferred_progress.remove(&s);
            if let Some(stream) = self.streams.get(&s) {
                stream.outbox.push_control(StreamItem::Update(progress(
                    INVALID_WATCH_ID,
                    self.revision,
                )));
            }
        }
    }

    fn create(&mut self, stream: u64, req: &WatchCreateRequest) -> Result<(i64, bool), WatchError> {
        if req.start_revision < 0 {
            return Err(WatchError::NegativeRevision);
        }
        let range =
            KeyRange::from_request(&req.key, &req.range_end).ok_or(WatchError::EmptyRange)?;
        let key = self.next_key();
        let revision = self.revision;
        let Some(s) = self.streams.get_mut(&stream) else {
            return Err(WatchError::EmptyRange); // the stream is closing; nobody reads this
        };
        let id = if req.watch_id == AUTO_WATCH_ID {
            while s.ids.contains_key(&s.next_id) {
                s.next_id += 1;
            }
            s.next_id += 1;
            s.next_id - 1
        } else if s.ids.contains_key(&req.watch_id) {
            return Err(WatchError::DuplicateId);
        } else {
            req.watch_id
        };
        s.ids.insert(id, Some(key));
        let outbox = Arc::clone(&s.outbox);
        outbox.push_control(StreamItem::Created {
            watch_id: id,
            revision,
        });

        let synced = req.start_revision == 0 || req.start_revision > revision;
        let next_rev = if synced {
            (revision + 1).max(req.start_revision)
        } else {
            req.start_revision
        };
        let mut no_put = false;
        let mut no_delete = false;
        for f in &req.filters {
            match FilterType::try_from(*f) {
                Ok(FilterType::Noput) => no_put = true,
                Ok(FilterType::Nodelete) => no_delete = true,
                Err(_) => {}
            }
        }
        if synced {
            self.synced.insert(key, &range);
        } else {
            self.unsynced.insert(key);
        }
        if req.prev_kv {
            self.prev_kv_watchers += 1;
        }
        self.watchers.insert(
            key,
            Watcher {
                stream,
                id,
                range,
                start_rev: req.start_revision,
                next_rev,
                no_put,
                no_delete,
                prev_kv: req.prev_kv,
                fragment: req.fragment,
                progress_notify: req.progress_notify,
                quiet: true,
                synced,
                pending: None,
                outbox,
            },
        );
        Ok((id, !synced))
    }
}

/// The control half of one client stream. Dropping it removes every watcher of the
/// stream and ends its receiver.
pub struct WatchStream {
    shared: Arc<Shared>,
    key: u64,
    outbox: Arc<Outbox>,
}

impl fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream")
            .field("key", &self.key)
            .finish()
    }
}

impl WatchStream {
    /// Creates a watcher. Queues `Created` (before any of its events) and returns the
    /// id, or queues `Rejected` and returns why.
    pub fn watch(&self, req: &WatchCreateRequest) -> Result<i64, WatchError> {
        let mut st = self.shared.state.lock();
        match st.create(self.key, req) {
            Ok((id, unsynced)) => {
                st.tell_counts(&*self.shared.history);
                drop(st);
                if unsynced {
                    self.shared.signal.wake();
                }
                Ok(id)
            }
            Err(e) => {
                self.outbox.push_control(StreamItem::Rejected {
                    reason: e.reason(),
                    revision: st.revision,
                });
                Err(e)
            }
        }
    }

    /// Refuses a create request before it reaches the hub (the caller may not watch
    /// its range): queues `Rejected` in order with everything else.
    pub fn reject(&self, reason: String) {
        let st = self.shared.state.lock();
        self.outbox.push_control(StreamItem::Rejected {
            reason,
            revision: st.revision,
        });
    }

    /// Cancels a watcher: drops its queued events and queues `Canceled`. False (and
    /// nothing queued, as in etcd) for an unknown id.
    pub fn cancel(&self, watch_id: i64) -> bool {
        let mut st = self.shared.state.lock();
        let Some(s) = st.streams.get_mut(&self.key) else {
            return false;
        };
        let Some(entry) = s.ids.remove(&watch_id) else {
            return false;
        };
        if let Some(w) = entry {
            st.remove_watcher(w);
            st.tell_counts(&*self.shared.history);
        }
        self.outbox.purge(watch_id);
        self.outbox.push_control(StreamItem::Canceled {
            watch_id,
            revision: st.revision,
            reason: String::new(),
        });
        st.flush_deferred_progress();
        true
    }

    /// The client's progress request: a progress update with watch id -1 and the hub's
    /// revision, queued once every watcher of the stream is synced (at once if they
    /// are).
    pub fn request_progress(&self) {
        let mut st = self.shared.state.lock();
        if st.stream_synced(self.key) {
            self.outbox
                .push_control(StreamItem::Update(progress(INVALID_WATCH_ID, st.revision)));
        } else {
            st.deferred_progress.insert(self.key);
        }
    }

    /// The periodic progress tick (etcd: every 10 minutes): each `progress_notify`
    /// watcher that is synced and got no events since the last tick gets an empty
    /// update at the hub's revision.
    pub fn progress_tick(&self) {
        let mut st = self.shared.state.lock();
        let revision = st.revision;
        let Some(s) = st.streams.get(&self.key) else {
            return;
        };
        let keys: Vec<u64> = s.ids.values().flatten().copied().collect();
        for key in keys {
            let Some(w) = st.watchers.get_mut(&key) else {
                continue;
            };
            if !w.progress_notify {
                continue;
            }
            if w.quiet && w.can_report_progress(revision) {
                // Dropped when the queue is full, as in etcd: the queued events
                // tell the client as much.
                let _ = w.outbox.push_bounded(progress(w.id, revision));
            }
            w.quiet = true;
        }
    }

    /// The hub's revision.
    pub fn revision(&self) -> i64 {
        self.shared.state.lock().revision
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        if let Some(s) = st.streams.remove(&self.key) {
            for key in s.ids.values().flatten() {
                st.remove_watcher(*key);
            }
            st.tell_counts(&*self.shared.history);
        }
        st.deferred_progress.remove(&self.key);
        drop(st);
        self.outbox.close();
    }
}

/// The reading half of one client stream.
#[derive(Debug)]
pub struct WatchReceiver {
    outbox: Arc<Outbox>,
}

impl WatchReceiver {
    /// The next item; `None` once the stream's control half is dropped.
    pub async fn recv(&mut self) -> Option<StreamItem> {
        self.outbox.pop().await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<StreamItem> {
        match self.outbox.try_pop() {
            Popped::Item(item) => Some(item),
            Popped::Empty | Popped::Closed => None,
        }
    }
}

impl Drop for WatchReceiver {
    fn drop(&mut self) {
        // Nobody reads any more: stop queueing.
        self.outbox.close();
    }
}
