//! The store: opening (rebuilding the key index), reads, and whole-file maintenance.
//!
//! Consistency between the in-memory index and the page file (see docs/mvcc.md):
//!
//! * An apply batch commits its page-file transaction first, then publishes its index
//!   changes under the `state` write lock. Readers take the `state` read lock, open a
//!   page-file snapshot and pick revisions from the index, then drop the lock and read the
//!   records. The snapshot is therefore at least as new as the index state, and every
//!   revision the index names has its record in it.
//! * History records dropped by compaction leave the index when the compacting batch
//!   publishes, and leave the page file only in a *later* batch ([`State::pending_removal`]).
//!   A snapshot opened under the lock can be newer than the index by at most one batch,
//!   whose removals were already out of the index: no reader looks for a removed record.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mnemo_proto::etcdserverpb::{AlarmMember, RangeRequest, RangeResponse};
use mnemo_proto::mvccpb::KeyValue;
use mnemo_storage::{CommitPoint, Database, DatabaseOptions, Durability, Table};
use parking_lot::{Condvar, Mutex, RwLock};

use super::index::{IndexKey, IndexLoader, IndexRev, KeyIndex};
use super::range;
use super::record::{
    self, Record, RecordKind, ALARM_TABLE, AUTH_TABLE, KV_TABLE, LEASE_TABLE, META_COMPACT_REV,
    META_CURRENT_REV, META_TABLE, RAFT_META_PREFIX, TABLES,
};
use super::revision::Revision;
use super::LeaseInfo;
use crate::auth::{AuthState, UserEntry};
use crate::error::{Error, Result};

/// The cached figures of [`Store::db_size_in_use`]: (measured at, commit, usage).
#[derive(Debug, Default)]
struct SizeInUse {
    value: Option<(Instant, u64, Usage)>,
    refreshing: bool,
}

/// How much of the page file is in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Pages in use × page size.
    pub in_use_bytes: u64,
    /// Free pages below the high-water mark (reused by later commits).
    pub free_pages: u64,
}

/// The page file's usage, from its statistics walk.
fn measure_in_use(db: &Database) -> Option<Usage> {
    let s = db.stats().ok()?;
    Some(Usage {
        in_use_bytes: s.page_count.saturating_sub(s.free_pages) * s.page_size,
        free_pages: s.free_pages,
    })
}

/// A point-in-time view of a whole store ([`Store::freeze`]).
pub struct FrozenState {
    rtx: mnemo_storage::ReadTransaction,
    opts: DatabaseOptions,
}

impl std::fmt::Debug for FrozenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenState").finish_non_exhaustive()
    }
}

impl FrozenState {
    /// Writes the view to a new page file at `path`, replacing any file there. Returns
    /// its size in bytes.
    pub fn write_to(&self, path: &Path) -> Result<u64> {
        const ENTRIES_PER_COMMIT: usize = 16 * 1024;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(internal(format!("snapshot: removing {path:?}: {e}"))),
        }
        let out = Database::open_path(path, self.opts.clone())?;
        self.rtx
            .copy_into(&out, Some(&TABLES), ENTRIES_PER_COMMIT)?;
        Ok(out.file_len()?)
    }
}

/// Everything readers share, replaced as a whole only by [`Store::restore_from`].
#[derive(Debug)]
pub(crate) struct State {
    pub db: Database,
    pub index: KeyIndex,
    pub current_rev: i64,
    pub compact_rev: i64,
    pub leases: BTreeMap<i64, LeaseInfo>,
    /// Keys whose live value is attached to each lease.
    pub lease_keys: HashMap<i64, BTreeSet<IndexKey>>,
    /// Sorted by (alarm type, member id).
    pub alarms: Vec<AlarmMember>,
    /// History records out of the index but still in the page file, oldest first.
    pub pending_removal: VecDeque<Revision>,
    pub auth: Arc<AuthState>,
}

/// The store's single apply slot: held by the open apply batch, and briefly by anything
/// that must see no batch between its page-file commit and its index update. A flag and
/// a condition variable rather than a mutex guard, so that an [`super::Applier`] can move
/// between threads (an async state machine may resume on another worker).
#[derive(Debug, Default)]
pub(crate) struct ApplyGate {
    busy: Mutex<bool>,
    cv: Condvar,
}

/// Holds the [`ApplyGate`] until dropped.
#[derive(Debug)]
pub(crate) struct GateToken<'a>(&'a ApplyGate);

impl ApplyGate {
    pub(crate) fn enter(&self) -> GateToken<'_> {
        let mut busy = self.busy.lock();
        while *busy {
            self.cv.wait(&mut busy);
        }
        *busy = true;
        GateToken(self)
    }
}

impl Drop for GateToken<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock() = false;
        self.0.cv.notify_one();
    }
}

/// The store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Store {
    pub(crate) state: RwLock<State>,
    /// Held by the open apply batch (and by whole-state replacement).
    pub(crate) apply_gate: ApplyGate,
    /// The page file's path; `None` for a store over another backend (tests).
    path: Option<PathBuf>,
    opts: DatabaseOptions,
    size_in_use: Arc<Mutex<SizeInUse>>,
    /// Watchers, and those of them that asked for prev_kv, as last told by the watch
    /// hub; `usize::MAX` until a hub attaches (then every batch lists its events and
    /// fills prev_kv).
    pub(crate) watchers: AtomicUsize,
    pub(crate) prev_kv_watchers: AtomicUsize,
    /// How long apply batches' page-file commits took (etcd's backend commit).
    pub(crate) commit_latency: mnemo_storage::histogram::LatencyHistogram,
    /// How long checkpoints took: the page file's fdatasync, slot write and fdatasync
    /// that make a deferred commit durable.
    checkpoint_latency: mnemo_storage::histogram::LatencyHistogram,
}

/// History records an apply batch removes from the page file, at most, after a
/// compaction. Compacted records are scattered through the history table, so each removal
/// copies a leaf (~50 µs): 256 keep a batch's commit within ~15 ms.
pub(crate) const REMOVALS_PER_BATCH: usize = 256;

/// History records per write transaction in [`Store::remove_compacted`].
const REMOVALS_PER_STEP: usize = 2048;

pub(crate) fn internal(msg: impl Into<String>) -> Error {
    Error::Internal(msg.into())
}

/// Reads the put stored under `rev` for `key` from the history table.
pub(crate) fn read_kv(table: &Table<'_>, key: &[u8], rev: IndexRev) -> Result<KeyValue> {
    let r = rev.revision();
    let k = r.encode();
    let v = table.get(&k)?.ok_or_else(|| {
        internal(format!(
            "mvcc: revision {r} of key {:?} is indexed but missing from table kv",
            String::from_utf8_lossy(key)
        ))
    })?;
    let rec = Record::decode(&k, &v)?;
    if rec.key != key || rec.kind != RecordKind::Put {
        return Err(internal(format!(
            "mvcc: record at revision {r} in table kv is not a put of key {:?}",
            String::from_utf8_lossy(key)
        )));
    }
    Ok(rec.to_kv(r))
}

fn meta_i64(meta: &Table<'_>, key: &[u8]) -> Result<Option<i64>> {
    meta.get(key)?
        .map(|v| record::decode_i64(key, &v))
        .transpose()
}

/// Creates the tables of a new file (and its starting revision) if missing.
fn init_tables(db: &Database) -> Result<()> {
    let rtx = db.begin_read()?;
    let have: BTreeSet<String> = rtx.list_tables()?.into_iter().map(|(n, _)| n).collect();
    drop(rtx);
    if TABLES.iter().all(|t| have.contains(*t)) {
        return Ok(());
    }
    let mut w = db.begin_write()?;
    for t in TABLES {
        w.open_table(t)?;
    }
    let mut meta = w.open_table(META_TABLE)?;
    if meta.get(META_CURRENT_REV)?.is_none() {
        // An empty store is at revision 1, as etcd: the first write gets revision 2.
        meta.insert(META_CURRENT_REV, &record::encode_i64(META_CURRENT_REV, 1))?;
    }
    w.commit(Durability::Durable)?;
    Ok(())
}

/// Rebuilds the in-memory state from the page file.
fn load(db: Database) -> Result<State> {
    init_tables(&db)?;
    let rtx = db.begin_read()?;
    let meta = rtx.open_table(META_TABLE)?;
    let current_rev = meta_i64(&meta, META_CURRENT_REV)?.unwrap_or(1);
    let compact_rev = meta_i64(&meta, META_COMPACT_REV)?.unwrap_or(0);
    if compact_rev > current_rev {
        return Err(internal(format!(
            "mvcc: compact revision {compact_rev} is beyond the current revision {current_rev}"
        )));
    }
    let mut loader = IndexLoader::default();
    for e in rtx.open_table(KV_TABLE)?.iter()? {
        let e = e?;
        let rev = Revision::decode(e.key())
            .filter(|r| r.sub <= i64::from(u32::MAX))
            .ok_or_else(|| internal(format!("mvcc: table kv has a malformed key {:?}", e.key())))?;
        if rev.main > current_rev {
            return Err(internal(format!(
                "mvcc: table kv holds revision {rev}, beyond the current revision {current_rev}"
            )));
        }
        let rec = Record::decode(e.key(), e.value())?;
        let put =
            (rec.kind == RecordKind::Put).then_some((rec.create_revision, rec.version, rec.lease));
        loader.push(rec.key, rev, put);
    }
    let mut index = loader.finish();
    let pending_removal = index.compact(compact_rev).into();
    let mut leases = BTreeMap::new();
    for e in rtx.open_table(LEASE_TABLE)?.iter()? {
        let e = e?;
        let (id, ttl, remaining_ttl) = record::decode_lease(e.key(), e.value())?;
        leases.insert(
            id,
            LeaseInfo {
                id,
                ttl,
                remaining_ttl,
            },
        );
    }
    let mut lease_keys: HashMap<i64, BTreeSet<IndexKey>> = HashMap::new();
    for (k, e) in index.iter() {
        if e.live().is_some() && e.lease != 0 {
            lease_keys.entry(e.lease).or_default().insert(Arc::clone(k));
        }
    }
    let mut alarms = Vec::new();
    for e in rtx.open_table(ALARM_TABLE)?.iter()? {
        let e = e?;
        let (member_id, alarm) = record::decode_alarm(e.key(), e.value())?;
        alarms.push(AlarmMember { member_id, alarm });
    }
    sort_alarms(&mut alarms);
    let auth = load_auth(&rtx.open_table(AUTH_TABLE)?)?;
    drop(rtx);
    Ok(State {
        db,
        index,
        current_rev,
        compact_rev,
        leases,
        lease_keys,
        alarms,
        pending_removal,
        auth: Arc::new(auth),
    })
}

/// The auth state from its table (docs/format.md, "auth").
fn load_auth(table: &Table<'_>) -> Result<AuthState> {
    let mut auth = AuthState::default();
    for e in table.iter()? {
        let e = e?;
        let key = e.key();
        if key == record::AUTH_FLAGS_KEY {
            (auth.enabled, auth.revision) = record::decode_auth_flags(e.value())?;
        } else if key.starts_with(record::AUTH_USER_PREFIX) {
            let user = record::decode_auth_user(key, e.value())?;
            let name = String::from_utf8_lossy(&user.name).into_owned();
            auth.users.insert(
                name,
                UserEntry {
                    user,
                    tokens_from: 0,
                },
            );
        } else if key.starts_with(record::AUTH_ROLE_PREFIX) {
            let role = record::decode_auth_role(key, e.value())?;
            let name = String::from_utf8_lossy(&role.name).into_owned();
            auth.roles.insert(name, role);
        } else {
            return Err(internal(format!(
                "mvcc: table auth has an unknown key {:?}",
                String::from_utf8_lossy(key)
            )));
        }
    }
    Ok(auth)
}

pub(crate) fn sort_alarms(alarms: &mut [AlarmMember]) {
    alarms.sort_by_key(|a| (a.alarm, a.member_id));
}

impl Store {
    /// Opens the store's page file at `path`, creating it if missing, and rebuilds the
    /// key index by scanning the history.
    pub fn open(path: &Path) -> Result<Store> {
        Self::open_with(path, DatabaseOptions::default())
    }

    /// [`Store::open`] with page-file options (page size for a new file, cache size).
    pub fn open_with(path: &Path, opts: DatabaseOptions) -> Result<Store> {
        let db = Database::open_path(path, opts.clone())?;
        let mut store = Self::from_database(db)?;
        store.path = Some(path.to_path_buf());
        store.opts = opts;
        Ok(store)
    }

    /// A store over an already open page file (any backend: memory, fault injection).
    /// Such a store cannot [`Store::restore_from`], which replaces a file by path.
    pub fn from_database(db: Database) -> Result<Store> {
        Ok(Store {
            state: RwLock::new(load(db)?),
            apply_gate: ApplyGate::default(),
            path: None,
            opts: DatabaseOptions::default(),
            size_in_use: Arc::default(),
            watchers: AtomicUsize::new(usize::MAX),
            prev_kv_watchers: AtomicUsize::new(usize::MAX),
            commit_latency: Default::default(),
            checkpoint_latency: Default::default(),
        })
    }

    pub(crate) fn db(&self) -> Database {
        self.state.read().db.clone()
    }

    pub fn current_revision(&self) -> i64 {
        self.state.read().current_rev
    }

    /// The last compaction's revision; 0 if the store was never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.state.read().compact_rev
    }

    /// Number of keys in the index (live or with kept history).
    pub fn indexed_keys(&self) -> usize {
        self.state.read().index.len()
    }

    /// A range read at the request's revision. The header carries only the store's current
    /// revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let (rtx, picks, total, current) = {
            let st = self.state.read();
            let plan = range::plan(req, st.current_rev, st.compact_rev)?;
            let rtx = st.db.begin_read()?;
            let (picks, total) = range::select(&st.index, &plan);
            (rtx, picks, total, st.current_rev)
        };
        let table = rtx.open_table(KV_TABLE)?;
        let kvs = picks
            .iter()
            .map(|(k, r)| read_kv(&table, k, *r))
            .collect::<Result<Vec<_>>>()?;
        Ok(range::finish(req, kvs, total, current))
    }

    /// Raft metadata stored by [`super::Applier::set_meta`].
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let rtx = self.db().begin_read()?;
        let meta = rtx.open_table(META_TABLE)?;
        let k = [RAFT_META_PREFIX, key].concat();
        match meta.get(&k)? {
            Some(v) => Ok(Some(record::unseal(META_TABLE, &k, &v)?.to_vec())),
            None => Ok(None),
        }
    }

    /// How long apply batches' page-file commits took since open.
    pub fn commit_latency(&self) -> mnemo_storage::histogram::HistogramSnapshot {
        self.commit_latency.snapshot()
    }

    /// Bytes of committed pages held in memory until a checkpoint writes them.
    pub fn held_bytes(&self) -> usize {
        self.db().held_bytes()
    }

    /// How long [`Store::checkpoint`]s took since open.
    pub fn checkpoint_latency(&self) -> mnemo_storage::histogram::HistogramSnapshot {
        self.checkpoint_latency.snapshot()
    }

    /// Every lease, by id.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        self.state.read().leases.values().cloned().collect()
    }

    pub fn lease(&self, id: i64) -> Option<LeaseInfo> {
        self.state.read().leases.get(&id).cloned()
    }

    /// Keys attached to a lease, in key order.
    pub fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.state
            .read()
            .lease_keys
            .get(&id)
            .map(|s| s.iter().map(|k| k.to_vec()).collect())
            .unwrap_or_default()
    }

    /// The auth state as of the last applied batch.
    pub fn auth(&self) -> Arc<AuthState> {
        self.state.read().auth.clone()
    }

    /// Active alarms, by (alarm type, member id).
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.state.read().alarms.clone()
    }

    /// Length of the page file in bytes.
    pub fn db_size(&self) -> u64 {
        self.db().file_len().unwrap_or(0)
    }

    /// Bytes of pages in use (the file minus its free pages). Counting free pages walks
    /// the whole file, so the figure is cached: after the first call, a stale figure (older
    /// than a few seconds, with commits since) is returned at once while a background
    /// thread measures again.
    pub fn db_size_in_use(&self) -> u64 {
        self.usage().in_use_bytes
    }

    /// [`Store::db_size_in_use`] and the free pages, measured (and cached) together.
    pub fn usage(&self) -> Usage {
        const MAX_AGE: Duration = Duration::from_secs(5);
        let db = self.db();
        let txn = db.last_txn();
        let mut c = self.size_in_use.lock();
        let Some((at, t, v)) = c.value else {
            drop(c);
            let v = measure_in_use(&db).unwrap_or_else(|| Usage {
                in_use_bytes: db.file_len().unwrap_or(0),
                free_pages: 0,
            });
            self.size_in_use.lock().value = Some((Instant::now(), txn, v));
            return v;
        };
        if t != txn && at.elapsed() >= MAX_AGE && !c.refreshing {
            c.refreshing = true;
            let cache = Arc::clone(&self.size_in_use);
            let spawned = std::thread::Builder::new()
                .name("mvcc-size".into())
                .spawn(move || {
                    let v = measure_in_use(&db);
                    let mut c = cache.lock();
                    c.refreshing = false;
                    if let Some(v) = v {
                        c.value = Some((Instant::now(), txn, v));
                    }
                });
            if spawned.is_err() {
                c.refreshing = false;
            }
        }
        v
    }

    /// Removes from the page file the history that compaction took out of the index. Apply
    /// batches do this too, a bounded amount each; this finishes the job in steps of the
    /// same size, letting batches in between. Returns how many records were removed.
    pub fn remove_compacted(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let _apply = self.apply_gate.enter();
            let (db, revs) = {
                let st = self.state.read();
                let revs: Vec<Revision> = st
                    .pending_removal
                    .iter()
                    .take(REMOVALS_PER_STEP)
                    .copied()
                    .collect();
                (st.db.clone(), revs)
            };
            if revs.is_empty() {
                break;
            }
            let mut w = db.begin_write()?;
            let mut kv = w.open_table(KV_TABLE)?;
            for r in &revs {
                kv.remove(&r.encode())?;
            }
            w.commit(Durability::Deferred)?;
            self.state.write().pending_removal.drain(..revs.len());
            total += revs.len();
        }
        if total > 0 {
            self.sync()?;
        }
        Ok(total)
    }

    /// Gives free space back to the file system while applies keep flowing: finishes
    /// removing compacted history, then runs the page file's incremental compaction, a few
    /// dozen leaves per write transaction.
    pub fn defrag(&self) -> Result<()> {
        self.remove_compacted()?;
        let db = self.db();
        // Pages freed by deferred commits become reusable only once a later commit is
        // durable, so make one first; a second pass moves what the first one freed.
        self.sync()?;
        let (before, _) = db.compact(64)?;
        self.sync()?;
        let (_, after) = db.compact(64)?;
        tracing::info!(before, after, "defragmented the page file");
        if let Some(v) = measure_in_use(&db) {
            self.size_in_use.lock().value = Some((Instant::now(), db.last_txn(), v));
        }
        Ok(())
    }

    /// Writes a consistent point-in-time copy of the whole state (history, leases, alarms,
    /// raft metadata) to a new page file at `path`, replacing any file there. Returns its
    /// size in bytes.
    pub fn snapshot_to(&self, path: &Path) -> Result<u64> {
        self.freeze()?.write_to(path)
    }

    /// The state as of the last committed batch, to be written out with
    /// [`FrozenState::write_to`] while later batches go on: the page file keeps every page
    /// the view reads until it is dropped.
    pub fn freeze(&self) -> Result<FrozenState> {
        Ok(FrozenState {
            rtx: self.db().begin_read()?,
            opts: self.opts.clone(),
        })
    }

    /// The last committed batch, to be made durable later by [`Store::checkpoint`].
    pub fn commit_point(&self) -> CommitPoint {
        self.db().commit_point()
    }

    /// Makes the batch at `point` durable (unless a newer one already is) without
    /// holding up the batches after it.
    pub fn checkpoint(&self, point: &CommitPoint) -> Result<()> {
        let started = std::time::Instant::now();
        point.checkpoint()?;
        self.checkpoint_latency.observe(started.elapsed());
        Ok(())
    }

    /// Makes every commit so far durable.
    pub fn sync(&self) -> Result<()> {
        self.db().begin_write()?.commit(Durability::Durable)?;
        Ok(())
    }

    /// Replaces the whole state with the page file at `src` (a copy written by
    /// [`Store::snapshot_to`], e.g. received as a raft snapshot). `src` is copied next to
    /// the store's file and renamed over it; readers that are still running keep their
    /// snapshot of the old file.
    pub fn restore_from(&self, src: &Path) -> Result<()> {
        let Some(path) = &self.path else {
            return Err(Error::Unsupported(
                "restoring a store that has no file path",
            ));
        };
        let _apply = self.apply_gate.enter();
        let tmp = path.with_extension("restore");
        let io = |what: &str, e: std::io::Error| internal(format!("restore: {what}: {e}"));
        std::fs::copy(src, &tmp).map_err(|e| io("copying the snapshot", e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("syncing the copy", e))?;
        // Check the copy before it replaces anything.
        let state = load(Database::open_path(&tmp, self.opts.clone())?)?;
        std::fs::rename(&tmp, path).map_err(|e| io("renaming the copy", e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("syncing the directory", e))?;
        }
        *self.state.write() = state;
        self.size_in_use.lock().value = None;
        Ok(())
    }
}
