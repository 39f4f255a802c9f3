//! openraft's state machine (`RaftStateMachine`) over the MVCC store.
//!
//! Applying is [`apply_batch`]: a pure function of (store state, entries) that opens one
//! store batch, applies the [`Command`]s of each normal entry's proposal, records the last applied log id
//! and (when one is in the batch) the membership under the store's meta keys, and commits.
//! Batches commit [`Durability::Deferred`]. Every [`DurabilityPolicy::every_entries`]
//! entries or [`DurabilityPolicy::every`], a batch's commit is made durable afterwards by
//! a checkpoint on a blocking thread ([`ApplyStore::checkpoint`]) while the next batches
//! apply, so the page file's fdatasync never holds up the apply path; the store is also
//! made durable at every snapshot and at shutdown. The WAL holds every entry after the
//! last durable commit (the log store purges lazily), so a crash that loses deferred
//! commits is repaired by re-applying from the log at restart.
//!
//! Every committed batch's [`Applied`] goes to the `on_applied` callback, in commit order
//! (the watch hub and the lease clock listen there).

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mnemo_storage::Durability;
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use tokio::sync::Mutex;

use crate::command::{Command, CommandResponse};
use crate::error::{Error, Result};
use crate::mvcc::{Applied, Applier, FrozenState, Store};

use super::codec::{
    decode_log_id, decode_stored_membership, encode_log_id, encode_stored_membership,
};
use super::forward::Waiters;
use super::log_store::Progress;
use super::snapshot::{SnapshotDir, RECEIVING_FILE};
use super::{Member, TypeConfig};

/// Store meta key of the last applied log id ([`super::codec::encode_log_id`]).
pub const META_APPLIED: &[u8] = b"raft/applied";
/// Store meta key of the last applied membership ([`super::codec::encode_stored_membership`]).
pub const META_MEMBERSHIP: &[u8] = b"raft/membership";

/// Receives every committed batch's changes, in commit order.
pub type OnApplied = Arc<dyn Fn(Applied) + Send + Sync>;

/// What the state machine needs of a store. [`Store`] is the real one; tests use small
/// in-memory stores that can also lose their deferred commits.
pub trait ApplyStore: Send + Sync + 'static {
    type Batch<'a>: ApplyBatch
    where
        Self: 'a;
    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn begin_apply(&self) -> Result<Self::Batch<'_>>;
    /// Makes every committed batch durable.
    fn sync(&self) -> Result<()>;
    /// The last committed batch, for [`ApplyStore::checkpoint`].
    type Point: Send + Sync + 'static;
    fn commit_point(&self) -> Self::Point;
    /// Makes the batch at `point` durable (unless a newer one already is) while later
    /// batches go on.
    fn checkpoint(&self, point: &Self::Point) -> Result<()>;
    /// The store as of the last committed batch, to be copied while batches go on.
    type Frozen: FrozenStore;
    fn freeze(&self) -> Result<Self::Frozen>;
    /// Replaces the store's whole state with the copy at `path`, durably.
    fn restore_from(&self, path: &Path) -> Result<()>;
}

/// A point-in-time view of an [`ApplyStore`].
pub trait FrozenStore: Send + 'static {
    /// Writes the view to a new file at `path` (not yet synced).
    fn write_to(&self, path: &Path) -> Result<u64>;
}

impl FrozenStore for FrozenState {
    fn write_to(&self, path: &Path) -> Result<u64> {
        FrozenState::write_to(self, path)
    }
}

/// One open apply batch of an [`ApplyStore`].
pub trait ApplyBatch {
    fn apply(&mut self, cmd: &Command) -> CommandResponse;
    fn set_meta(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    fn commit(self, durability: Durability) -> Result<Applied>;
}

impl ApplyStore for Store {
    type Batch<'a> = Applier<'a>;
    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Store::get_meta(self, key)
    }
    fn begin_apply(&self) -> Result<Applier<'_>> {
        Store::begin_apply(self)
    }
    fn sync(&self) -> Result<()> {
        Store::sync(self)
    }
    type Point = mnemo_storage::CommitPoint;
    fn commit_point(&self) -> Self::Point {
        Store::commit_point(self)
    }
    fn checkpoint(&self, point: &Self::Point) -> Result<()> {
        Store::checkpoint(self, point)
    }
    type Frozen = FrozenState;
    fn freeze(&self) -> Result<FrozenState> {
        Store::freeze(self)
    }
    fn restore_from(&self, path: &Path) -> Result<()> {
        Store::restore_from(self, path)
    }
}

impl ApplyBatch for Applier<'_> {
    fn apply(&mut self, cmd: &Command) -> CommandResponse {
        Applier::apply(self, cmd)
    }
    fn set_meta(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Applier::set_meta(self, key, value)
    }
    fn commit(self, durability: Durability) -> Result<Applied> {
        Applier::commit(self, durability)
    }
}

/// When an apply batch is committed durably.
#[derive(Debug, Clone, Copy)]
pub struct DurabilityPolicy {
    /// At most this many entries are applied between durable commits.
    pub every_entries: u64,
    /// At most this long passes between durable commits while entries are applied.
    pub every: Duration,
}

impl Default for DurabilityPolicy {
    fn default() -> Self {
        Self {
            every_entries: 10_000,
            every: Duration::from_secs(1),
        }
    }
}

/// The applied position, read from the store at open and kept in step with it.
#[derive(Debug, Clone, Default)]
pub struct AppliedState {
    pub applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, Member>,
}

fn sm_err(e: impl fmt::Display) -> StorageError<u64> {
    StorageIOError::write_state_machine(&io::Error::other(e.to_string())).into()
}

fn snap_err(e: impl fmt::Display) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, &io::Error::other(e.to_string())).into()
}

/// Reads the applied state from the store's meta keys.
pub fn read_applied_state<S: ApplyStore>(store: &S) -> Result<AppliedState> {
    let corrupt = |what: &str, e: super::codec::CodecError| {
        Error::Internal(format!("store meta {what}: {e}"))
    };
    let applied = match store.get_meta(META_APPLIED)? {
        Some(b) => Some(decode_log_id(&b).map_err(|e| corrupt("raft/applied", e))?),
        None => None,
    };
    let membership = match store.get_meta(META_MEMBERSHIP)? {
        Some(b) => decode_stored_membership(&b).map_err(|e| corrupt("raft/membership", e))?,
        None => StoredMembership::default(),
    };
    Ok(AppliedState {
        applied,
        membership,
    })
}

/// Whether `entries` is one normal entry holding one [`Command::is_point`] command.
fn is_lone_point(entries: &[Entry<TypeConfig>]) -> bool {
    match entries {
        [e] => match &e.payload {
            EntryPayload::Normal(p) => matches!(p.commands.as_slice(), [c] if c.is_point()),
            _ => false,
        },
        _ => false,
    }
}

/// Applies `entries` (contiguous, after `state.applied`) to `store` in one batch and
/// commits it with `durability`; `state` is updated to the batch's end. Returns, per
/// entry in order, one response per command of its proposal (none for blank and
/// membership entries), and what the batch changed.
pub fn apply_batch<S: ApplyStore>(
    store: &S,
    state: &mut AppliedState,
    entries: &[Entry<TypeConfig>],
    durability: Durability,
) -> Result<(Vec<Vec<CommandResponse>>, Applied)> {
    let mut batch = store.begin_apply()?;
    let mut responses = Vec::with_capacity(entries.len());
    let mut membership = None;
    for e in entries {
        responses.push(match &e.payload {
            EntryPayload::Blank => Vec::new(),
            EntryPayload::Normal(p) => p.commands.iter().map(|c| batch.apply(c)).collect(),
            EntryPayload::Membership(m) => {
                membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                Vec::new()
            }
        });
    }
    let Some(last) = entries.last() else {
        return Ok((responses, Applied::default()));
    };
    batch.set_meta(META_APPLIED, &encode_log_id(&last.log_id))?;
    if let Some(m) = &membership {
        batch.set_meta(META_MEMBERSHIP, &encode_stored_membership(m))?;
    }
    let applied = batch.commit(durability)?;
    state.applied = Some(last.log_id);
    if let Some(m) = membership {
        state.membership = m;
    }
    Ok((responses, applied))
}

/// Apply bookkeeping guarded by one lock, so that a snapshot sees a batch boundary.
#[derive(Debug)]
struct Inner {
    state: AppliedState,
    entries_since_durable: u64,
    last_durable: Instant,
}

/// The raft state machine over an [`ApplyStore`].
pub struct StateMachine<S: ApplyStore = Store> {
    store: Arc<S>,
    inner: Arc<Mutex<Inner>>,
    snaps: SnapshotDir,
    /// Held by a snapshot build from start to end.
    builds: Arc<Mutex<()>>,
    progress: Arc<Progress>,
    policy: DurabilityPolicy,
    /// Set while a checkpoint runs; the next one starts only after it.
    checkpointing: Arc<AtomicBool>,
    on_applied: OnApplied,
    /// Clients of this member waiting for the commands it forwarded to the leader.
    forwarded: Option<Arc<Waiters>>,
}

impl<S: ApplyStore> fmt::Debug for StateMachine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachine")
            .field("snaps", &self.snaps)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<S: ApplyStore> StateMachine<S> {
    /// Opens the state machine: reads the applied state and makes the store's current
    /// state durable (a deferred commit that survived a process crash may still be only in
    /// the page cache).
    pub fn open(
        store: Arc<S>,
        member_dir: &Path,
        progress: Arc<Progress>,
        policy: DurabilityPolicy,
        on_applied: OnApplied,
    ) -> Result<StateMachine<S>> {
        let snaps = SnapshotDir::open(member_dir)
            .map_err(|e| Error::Internal(format!("snapshot directory: {e}")))?;
        store.sync()?;
        let state = read_applied_state(store.as_ref())?;
        progress.set_members(state.membership.membership().nodes().count());
        if let Some(a) = state.applied {
            progress.set_applied(a.index);
            progress.set_durable_applied(a.index);
        }
        Ok(StateMachine {
            store,
            inner: Arc::new(Mutex::new(Inner {
                state,
                entries_since_durable: 0,
                last_durable: Instant::now(),
            })),
            snaps,
            builds: Arc::default(),
            progress,
            policy,
            checkpointing: Arc::default(),
            on_applied,
            forwarded: None,
        })
    }

    /// Hands the responses of commands this member forwarded to their waiters.
    pub fn with_forwarded(mut self, waiters: Arc<Waiters>) -> Self {
        self.forwarded = Some(waiters);
        self
    }

    /// The applied state as of the last committed batch.
    pub async fn applied(&self) -> AppliedState {
        self.inner.lock().await.state.clone()
    }
}

impl<S: ApplyStore> RaftStateMachine<TypeConfig> for StateMachine<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, Member>), StorageError<u64>> {
        let inner = self.inner.lock().await;
        Ok((inner.state.applied, inner.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResponse>>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id.index) else {
            return Ok(Vec::new());
        };
        // (entry, command, wait id) of the commands this member forwarded.
        let forwarded: Vec<(usize, usize, u64)> = match &self.forwarded {
            Some(w) if w.any() => entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match &e.payload {
                    EntryPayload::Normal(p) => Some((i, p)),
                    _ => None,
                })
                .flat_map(|(i, p)| {
                    p.commands
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.forwarded_by == w.member_id() && c.forward_id != 0)
                        .map(move |(j, c)| (i, j, c.forward_id))
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut inner = self.inner.clone().lock_owned().await;
        let n = entries.len() as u64;
        // A durable store commit must not get ahead of the durable log: after a crash the
        // log has to hold everything the store applied.
        let due = inner.entries_since_durable + n >= self.policy.every_entries
            || inner.last_durable.elapsed() >= self.policy.every;
        let checkpoint = due
            && self.progress.flushed().is_some_and(|f| f >= last)
            && !self.checkpointing.swap(true, Ordering::AcqRel);
        let store = self.store.clone();
        let lone = self.progress.proposed() == 1 && is_lone_point(&entries);
        let work = move || {
            let r = apply_batch(
                store.as_ref(),
                &mut inner.state,
                &entries,
                Durability::Deferred,
            )
            .map(|(responses, applied)| {
                // Taken before the lock is released: exactly this batch's commit.
                let point = checkpoint.then(|| store.commit_point());
                (responses, applied, point)
            });
            (inner, r)
        };
        // A lone one-key command while it is the only one proposed here applies on this
        // task (a follower, which proposes nothing itself, always uses the pool):
        // the blocking pool's two thread wake-ups would be a sixth of a sequential put.
        // Under load batches go to the pool, which keeps the runtime's workers serving
        // connections (applying inline there lowered etcdctl check perf's rate by 12%).
        let (mut inner, result) = if lone {
            work()
        } else {
            tokio::task::spawn_blocking(work).await.map_err(sm_err)?
        };
        let (responses, applied, point) = match result {
            Ok(r) => r,
            Err(e) => {
                if checkpoint {
                    self.checkpointing.store(false, Ordering::Release);
                }
                return Err(sm_err(e));
            }
        };
        self.progress.set_applied(last);
        self.progress
            .set_members(inner.state.membership.membership().nodes().count());
        match point {
            Some(point) => {
                inner.entries_since_durable = 0;
                inner.last_durable = Instant::now();
                let (store, progress) = (self.store.clone(), self.progress.clone());
                let busy = self.checkpointing.clone();
                tokio::task::spawn_blocking(move || {
                    match store.checkpoint(&point) {
                        Ok(()) => progress.set_durable_applied(last),
                        // The store refuses writes from now on; the next apply fails.
                        Err(e) => tracing::error!(error = %e, "store checkpoint failed"),
                    }
                    busy.store(false, Ordering::Release);
                });
            }
            None => inner.entries_since_durable += n,
        }
        drop(inner);
        (self.on_applied)(applied);
        if let Some(w) = &self.forwarded {
            for (i, j, id) in forwarded {
                if let Some(r) = responses.get(i).and_then(|r| r.get(j)) {
                    w.deliver(id, r.clone());
                }
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder<S> {
        SnapshotBuilder {
            store: self.store.clone(),
            inner: self.inner.clone(),
            snaps: self.snaps.clone(),
            builds: self.builds.clone(),
            progress: self.progress.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        let f = tokio::fs::File::create(self.snaps.path(RECEIVING_FILE))
            .await
            .map_err(snap_err)?;
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Member>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        let data_file = SnapshotDir::data_file(&meta.snapshot_id);
        let data = self.snaps.path(&data_file);
        place_snapshot(snapshot, &self.snaps.path(RECEIVING_FILE), &data)
            .await
            .map_err(snap_err)?;
        let mut inner = self.inner.clone().lock_owned().await;
        let store = self.store.clone();
        let snaps = self.snaps.clone();
        let meta2 = meta.clone();
        let (mut inner, result) = tokio::task::spawn_blocking(move || {
            let r = (move || -> Result<AppliedState> {
                store.restore_from(&data)?;
                snaps
                    .commit(&meta2, &data_file, None)
                    .map_err(|e| Error::Internal(format!("snapshot: {e}")))?;
                read_applied_state(store.as_ref())
            })();
            if let Ok(state) = &r {
                inner.state = state.clone();
            }
            (inner, r)
        })
        .await
        .map_err(snap_err)?;
        let state = result.map_err(snap_err)?;
        self.progress
            .set_members(state.membership.membership().nodes().count());
        if state.applied != meta.last_log_id {
            return Err(snap_err(format!(
                "installed snapshot applies up to {:?}, its meta says {:?}",
                state.applied, meta.last_log_id
            )));
        }
        if let Some(a) = state.applied {
            self.progress.set_applied(a.index);
            self.progress.set_durable_applied(a.index);
        }
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, "installed a snapshot from the leader");
        (self.on_applied)(Applied {
            restored: true,
            ..Applied::default()
        });
        inner.entries_since_durable = 0;
        inner.last_durable = Instant::now();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        // A snapshot built meanwhile replaces the one just read and removes its file:
        // read the newer one then.
        let mut attempts = 0;
        loop {
            let Some((meta, path)) = self.snaps.current().map_err(snap_err)? else {
                return Ok(None);
            };
            match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    return Ok(Some(Snapshot {
                        meta,
                        snapshot: Box::new(file),
                    }))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(snap_err(e)),
            }
        }
    }
}

/// Makes the received snapshot `file` durable at `data`. Usually it is the file
/// `begin_receiving_snapshot` created at `receiving`, which is renamed; any other file
/// handle (a caller may hand over another snapshot's file) is copied.
async fn place_snapshot(
    mut file: Box<tokio::fs::File>,
    receiving: &Path,
    data: &Path,
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use tokio::io::AsyncSeekExt;

    let got = file.metadata().await?;
    let same = match tokio::fs::metadata(receiving).await {
        Ok(m) => m.dev() == got.dev() && m.ino() == got.ino(),
        Err(_) => false,
    };
    if same {
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(receiving, data).await?;
    } else {
        file.seek(io::SeekFrom::Start(0)).await?;
        let tmp = data.with_extension("copy.tmp");
        let mut out = tokio::fs::File::create(&tmp).await?;
        tokio::io::copy(&mut file, &mut out).await?;
        out.sync_all().await?;
        drop(out);
        tokio::fs::rename(&tmp, data).await?;
        let _ = tokio::fs::remove_file(receiving).await;
    }
    Ok(())
}

/// Builds a snapshot: a durable copy of the store as of a boundary between two apply
/// batches, written while later batches are applied.
pub struct SnapshotBuilder<S: ApplyStore = Store> {
    store: Arc<S>,
    inner: Arc<Mutex<Inner>>,
    snaps: SnapshotDir,
    builds: Arc<Mutex<()>>,
    progress: Arc<Progress>,
}

impl<S: ApplyStore> fmt::Debug for SnapshotBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("snaps", &self.snaps)
            .finish_non_exhaustive()
    }
}

impl<S: ApplyStore> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        // One build at a time, so that snapshots are committed in the order they were taken.
        let _build = self.builds.clone().lock_owned().await;
        // Under the apply lock, only what must sit on a batch boundary: a durable store
        // commit and a frozen view of the store with the applied state it holds. The copy
        // is made from the view after the lock is released, so applies go on meanwhile.
        let mut inner = self.inner.clone().lock_owned().await;
        let store = self.store.clone();
        let (inner_back, taken) = tokio::task::spawn_blocking(move || {
            let r = (|| -> Result<(AppliedState, S::Frozen)> {
                store.sync()?;
                let frozen = store.freeze()?;
                inner.entries_since_durable = 0;
                inner.last_durable = Instant::now();
                Ok((inner.state.clone(), frozen))
            })();
            (inner, r)
        })
        .await
        .map_err(snap_err)?;
        drop(inner_back);
        let (state, frozen) = taken.map_err(snap_err)?;
        if let Some(a) = state.applied {
            self.progress.set_durable_applied(a.index);
        }
        let unique = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let (term, index) = state
            .applied
            .map_or((0, 0), |a| (a.leader_id.term, a.index));
        let snapshot_id = format!("{term:x}-{index:x}-{unique:x}");
        let data_file = SnapshotDir::data_file(&snapshot_id);
        let tmp = self.snaps.path(&format!("{data_file}.tmp"));
        let io = |e: io::Error| Error::Internal(format!("snapshot: {e}"));
        let written = tokio::task::spawn_blocking({
            let tmp = tmp.clone();
            move || -> Result<()> {
                frozen.write_to(&tmp)?;
                drop(frozen);
                File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)
            }
        })
        .await
        .map_err(snap_err)?;
        let meta = SnapshotMeta {
            last_log_id: state.applied,
            last_membership: state.membership,
            snapshot_id,
        };
        // Committed and opened under the apply lock: a snapshot installed from the leader
        // meanwhile (also under it) is newer than this one and stays current; and once
        // the lock is released, a later snapshot may replace this one and remove its file.
        let inner = self.inner.clone().lock_owned().await;
        let snaps = self.snaps.clone();
        let (inner_back, result) = tokio::task::spawn_blocking(move || {
            let r = (|| -> Result<(SnapshotMeta<u64, Member>, File)> {
                if let Some((current, path)) = snaps.current().map_err(io)? {
                    if current.last_log_id > meta.last_log_id {
                        // (Its commit may also have removed this build's file.)
                        let _ = std::fs::remove_file(&tmp);
                        let file = File::open(&path).map_err(io)?;
                        return Ok((current, file));
                    }
                }
                written?;
                let data = snaps.path(&data_file);
                std::fs::rename(&tmp, &data).map_err(io)?;
                snaps
                    .commit(&meta, &data_file, Some(RECEIVING_FILE))
                    .map_err(io)?;
                let file = File::open(&data).map_err(io)?;
                Ok((meta, file))
            })();
            (inner, r)
        })
        .await
        .map_err(snap_err)?;
        let (meta, file) = result.map_err(snap_err)?;
        drop(inner_back);
        let file = tokio::fs::File::from_std(file);
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}
