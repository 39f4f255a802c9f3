//! Multi-version key-value store with etcd's semantics, over the page file.
//!
//! * [`Store`]: opening (rebuilds the in-memory key index), range reads at any kept
//!   revision, leases, alarms, hashes, defrag, snapshots. Design: docs/mvcc.md; on-disk
//!   layout: docs/format.md, "MVCC tables".
//! * [`Applier`]: the one open apply batch; applies raft [`Command`]s with etcd's rules
//!   and commits them (with the raft layer's metadata) in one page-file transaction.
//! * [`History`]: what the watch hub reads.
//!
//! [`Command`]: crate::command::Command

mod apply;
mod history;
pub mod index;
mod range;
mod read_txn;
pub mod record;
pub mod revision;
mod store;
pub mod watch;

use mnemo_proto::mvccpb::Event;

pub use apply::{Applier, MAX_LEASE_TTL};
pub use revision::Revision;
pub use store::{FrozenState, Store};

/// One lease as stored by the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    /// TTL in seconds given at grant.
    pub ttl: i64,
    /// Remaining TTL recorded by the last checkpoint, 0 if none.
    pub remaining_ttl: i64,
}

/// What a committed batch of commands changed, for the watch hub and the lessor.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Every event of the batch in revision order, unless `events_omitted`. prev_kv is
    /// filled when one exists, unless `prev_kv_omitted` (the watch hub strips it for
    /// watchers that did not ask).
    pub events: Vec<Event>,
    /// Set when the batch listed no events because, when it began, the watch hub had
    /// no watchers (see [`History::set_watcher_counts`]). A watcher created since then
    /// reads these revisions from history instead.
    pub events_omitted: bool,
    /// Set when the batch left prev_kv out of `events` because, when it began, no
    /// watcher had asked for prev_kv (see [`History::set_watcher_counts`]). A watcher
    /// that wants prev_kv then reads these revisions from history instead.
    pub prev_kv_omitted: bool,
    /// Store revision after the batch.
    pub revision: i64,
    pub leases_granted: Vec<LeaseInfo>,
    pub leases_revoked: Vec<i64>,
    /// The store was replaced by a snapshot from the leader: anything may have changed,
    /// and `events` is empty. Watchers resync from history; the lessor reloads.
    pub restored: bool,
}

/// Read access to history for the watch hub.
pub trait History: Send + Sync + 'static {
    fn current_revision(&self) -> i64;
    fn compact_revision(&self) -> i64;
    /// Events with revision >= start_rev on keys in [key, range_end) (etcd range rules), in revision order, at most `limit` (whole revisions may be cut at the limit), each with prev_kv filled where a previous version exists. Err(Error::Compacted) if start_rev <= compact_revision (and compact_revision > 0).
    fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> crate::error::Result<Vec<mnemo_proto::mvccpb::Event>>;
    /// The watch hub tells the store how many watchers it has and how many of them
    /// asked for prev_kv. While there are none, apply batches need not list their
    /// events in [`Applied::events`]; while none want prev_kv, they need not read (and
    /// copy) the previous value of every key they change.
    fn set_watcher_counts(&self, _watchers: usize, _prev_kv: usize) {}
}

#[cfg(test)]
mod tests;
