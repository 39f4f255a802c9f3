//! Applying raft commands: the apply batch, and each command's etcd semantics.
//!
//! A batch owns the page file's write transaction and a layer of index entries it changed
//! ([`Batch::keys`]) over the shared index, which readers keep using until the batch
//! commits. Inside a batch, each write command runs in a [`TxnCtx`]: its changes are
//! staged (index entries and values in memory) and reach the batch only when the whole
//! command succeeded, so a rejected txn leaves nothing behind.
//!
//! Validation follows etcd's `txn.go`: a txn's compares, and the compares of every nested
//! txn on the chosen path, are evaluated against the state before the txn; its requests
//! are checked (range revisions, `ignore_value`/`ignore_lease`, leases) against the same
//! state; then the operations run in order, each seeing the writes of the earlier ones.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mnemo_proto::etcdserverpb::alarm_request::AlarmAction;
use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::request_op::Request;
use mnemo_proto::etcdserverpb::response_op::Response;
use mnemo_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse,
    Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseCheckpointRequest,
    LeaseCheckpointResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseOp,
    TxnRequest, TxnResponse,
};
use mnemo_proto::mvccpb::{event::EventType, Event, KeyValue};
use mnemo_storage::{Durability, WriteTransaction};

use super::index::{IndexKey, IndexRev, IndexView, KeyEntry, KeyRange, Layer, Layered};
use super::range::{self, header};
use super::record::{
    self, Record, ALARM_TABLE, AUTH_TABLE, KV_TABLE, LEASE_TABLE, META_COMPACT_REV,
    META_CURRENT_REV, META_TABLE, RAFT_META_PREFIX,
};
use super::revision::Revision;
use super::store::{internal, read_kv, sort_alarms, GateToken, Store, REMOVALS_PER_BATCH};
use super::{Applied, LeaseInfo};
use crate::auth::{AuthState, Touched};
use crate::command::{Command, CommandResponse, Op};
use crate::error::{Error, Result};

/// etcd's largest lease TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Keys a range delete gathers from the index at a time: a prefix delete of many keys
/// holds one piece of them beyond what it stages.
pub(super) const DELETE_PIECE: usize = 1024;

/// What a batch changed, not yet visible to readers.
#[derive(Debug)]
struct Batch {
    /// Full copies of every index entry the batch changed.
    keys: Layer,
    current_rev: i64,
    compact_rev: i64,
    compacted: bool,
    /// `None`: revoked in this batch.
    leases: BTreeMap<i64, Option<LeaseInfo>>,
    alarms: Vec<AlarmMember>,
    alarms_changed: bool,
    events: Vec<Event>,
    granted: Vec<LeaseInfo>,
    revoked: Vec<i64>,
    /// The auth state as changed by this batch; `None`: unchanged.
    auth: Option<AuthState>,
}

/// An open apply batch: holds the store's single writer until committed.
#[derive(Debug)]
pub struct Applier<'a> {
    store: &'a Store,
    _apply: GateToken<'a>,
    wtx: WriteTransaction,
    batch: Batch,
    start_rev: i64,
    start_compact: i64,
    /// Whether the batch lists its events: the watch hub had watchers when it began.
    record_events: bool,
    /// Whether events carry prev_kv: some watcher asked for it when the batch began.
    fill_prev: bool,
    /// Set when storage failed mid-batch: the batch can only be dropped.
    failed: Option<Error>,
}

/// A write command in progress: changes staged over the batch.
#[derive(Debug)]
struct TxnCtx {
    /// Store revision before the command.
    begin: i64,
    staged: Layer,
    /// The command's changes in sub-revision order: change `i` has revision
    /// `(begin + 1, i)`.
    changes: Vec<Change>,
}

/// One staged change; `prev` is the previous value when the batch's events carry it.
/// Values are boxed so that a delete's change, the common one in a big command, takes
/// three words.
#[derive(Debug)]
enum Change {
    Put {
        kv: Box<KeyValue>,
        prev: Option<Box<KeyValue>>,
    },
    Delete {
        key: IndexKey,
        prev: Option<Box<KeyValue>>,
    },
}

impl Change {
    fn into_event(self, main: i64) -> Event {
        match self {
            Change::Put { kv, prev } => Event {
                r#type: EventType::Put as i32,
                kv: Some(*kv),
                prev_kv: prev.map(|p| *p),
            },
            Change::Delete { key, prev } => Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: key.to_vec(),
                    mod_revision: main,
                    ..Default::default()
                }),
                prev_kv: prev.map(|p| *p),
            },
        }
    }
}

impl TxnCtx {
    fn new(begin: i64) -> TxnCtx {
        TxnCtx {
            begin,
            staged: Layer::new(),
            changes: Vec::new(),
        }
    }

    /// The revision reads inside the command see (etcd's `storeTxnWrite.Range`).
    fn read_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    fn next_rev(&self) -> Revision {
        Revision::new(self.begin + 1, self.changes.len() as i64)
    }
}

/// A deterministic rejection (same on every member) or a storage failure.
fn is_storage_failure(e: &Error) -> bool {
    matches!(e, Error::Internal(_))
}

impl Store {
    /// Starts the apply batch, waiting for the previous one to commit.
    pub fn begin_apply(&self) -> Result<Applier<'_>> {
        let guard = self.apply_gate.enter();
        let (db, current_rev, compact_rev, alarms) = {
            let st = self.state.read();
            (
                st.db.clone(),
                st.current_rev,
                st.compact_rev,
                st.alarms.clone(),
            )
        };
        let wtx = db.begin_write()?;
        let record_events = self.watchers.load(Ordering::Acquire) != 0;
        let fill_prev = record_events && self.prev_kv_watchers.load(Ordering::Acquire) != 0;
        Ok(Applier {
            store: self,
            _apply: guard,
            wtx,
            batch: Batch {
                keys: Layer::new(),
                current_rev,
                compact_rev,
                compacted: false,
                leases: BTreeMap::new(),
                alarms,
                alarms_changed: false,
                events: Vec::new(),
                granted: Vec::new(),
                revoked: Vec::new(),
                auth: None,
            },
            start_rev: current_rev,
            start_compact: compact_rev,
            record_events,
            fill_prev,
            failed: None,
        })
    }
}

impl Applier<'_> {
    /// Applies one command. Rejections (compacted revision, unknown lease, ...) are
    /// `CommandResponse::Error` and change nothing. A storage failure also returns an
    /// error and fails the batch: [`Applier::commit`] then returns it.
    pub fn apply(&mut self, cmd: &Command) -> CommandResponse {
        if let Some(e) = &self.failed {
            return CommandResponse::Error(e.clone());
        }
        let Some(op) = &cmd.op else {
            return CommandResponse::Error(Error::InvalidArgument(
                "mnemo: command carries no operation".into(),
            ));
        };
        if cmd.auth_revision != 0 && cmd.auth_revision < self.auth_revision() {
            return CommandResponse::Error(Error::AuthOldRevision);
        }
        let res = match op {
            Op::Put(r) => self.put(r).map(CommandResponse::Put),
            Op::DeleteRange(r) => self.delete_range(r).map(CommandResponse::DeleteRange),
            Op::Txn(r) => self.txn(r).map(CommandResponse::Txn),
            Op::Compaction(r) => self.compaction(r).map(CommandResponse::Compaction),
            Op::LeaseGrant(r) => self.lease_grant(r).map(CommandResponse::LeaseGrant),
            Op::LeaseRevoke(r) => self.lease_revoke(r).map(CommandResponse::LeaseRevoke),
            Op::LeaseCheckpoint(r) => self
                .lease_checkpoint(r)
                .map(CommandResponse::LeaseCheckpoint),
            Op::Alarm(r) => self.alarm(r).map(CommandResponse::Alarm),
            Op::AuthEnable(_) => self.auth(|a| a.enable()),
            Op::AuthDisable(_) => self.auth(|a| Ok(a.disable())),
            Op::UserAdd(r) => self.auth(|a| a.user_add(r)),
            Op::UserDelete(r) => self.auth(|a| a.user_delete(r)),
            Op::UserChangePassword(r) => self.auth(|a| a.user_change_password(r)),
            Op::UserGrantRole(r) => self.auth(|a| a.user_grant_role(r)),
            Op::UserRevokeRole(r) => self.auth(|a| a.user_revoke_role(r)),
            Op::RoleAdd(r) => self.auth(|a| a.role_add(r)),
            Op::RoleDelete(r) => self.auth(|a| a.role_delete(r)),
            Op::RoleGrantPermission(r) => self.auth(|a| a.role_grant_permission(r)),
            Op::RoleRevokePermission(r) => self.auth(|a| a.role_revoke_permission(r)),
        };
        match res {
            Ok(r) => r,
            Err(e) => {
                if is_storage_failure(&e) {
                    self.failed = Some(e.clone());
                }
                CommandResponse::Error(e)
            }
        }
    }

    /// Stores opaque raft metadata (applied log id, membership) in the batch's page-file
    /// transaction, so it becomes durable exactly with the commands it describes.
    pub fn set_meta(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let k = [RAFT_META_PREFIX, key].concat();
        self.wtx
            .open_table(META_TABLE)?
            .insert(&k, &record::seal(&k, value))?;
        Ok(())
    }

    /// The store revision as of the commands applied so far in this batch.
    pub fn current_revision(&self) -> i64 {
        self.batch.current_rev
    }

    /// Commits the batch to the page file, then makes it visible to readers.
    pub fn commit(self, durability: Durability) -> Result<Applied> {
        let Applier {
            store,
            _apply,
            mut wtx,
            batch,
            start_rev,
            start_compact,
            failed,
            record_events,
            fill_prev,
        } = self;
        if let Some(e) = failed {
            return Err(e);
        }
        // History that earlier batches took out of the index (see store.rs).
        let removals: Vec<Revision> = store
            .state
            .read()
            .pending_removal
            .iter()
            .take(REMOVALS_PER_BATCH)
            .copied()
            .collect();
        if !removals.is_empty() {
            let mut kv = wtx.open_table(KV_TABLE)?;
            for r in &removals {
                kv.remove(&r.encode())?;
            }
        }
        let mut meta = wtx.open_table(META_TABLE)?;
        if batch.current_rev != start_rev {
            meta.insert(
                META_CURRENT_REV,
                &record::encode_i64(META_CURRENT_REV, batch.current_rev),
            )?;
        }
        if batch.compact_rev != start_compact {
            meta.insert(
                META_COMPACT_REV,
                &record::encode_i64(META_COMPACT_REV, batch.compact_rev),
            )?;
        }
        let started = std::time::Instant::now();
        wtx.commit(durability)?;
        self.store.commit_latency.observe(started.elapsed());

        // Compaction is worked out before taking the write lock, so readers wait only for
        // the merge: the shared index changes only under the apply gate, which this batch
        // holds.
        let mut keys = batch.keys;
        let mut compacted: Vec<(IndexKey, KeyEntry)> = Vec::new();
        let mut dropped = Vec::new();
        if batch.compacted {
            let at = batch.compact_rev;
            for e in keys.values_mut() {
                e.compact(at, &mut dropped);
            }
            let st = store.state.read();
            for (k, e) in st.index.iter() {
                if e.needs_compaction(at) && !keys.contains_key(k) {
                    let mut e = e.clone();
                    e.compact(at, &mut dropped);
                    compacted.push((Arc::clone(k), e));
                }
            }
            dropped.sort_unstable();
        }

        let mut guard = store.state.write();
        let st = &mut *guard;
        st.pending_removal.drain(..removals.len());
        for (key, entry) in keys {
            let new_lease = entry.live().map_or(0, |_| entry.lease);
            let old = st.index.insert(&key, entry);
            let old_lease = old
                .as_ref()
                .and_then(|e| e.live().map(|_| e.lease))
                .unwrap_or(0);
            if old_lease != new_lease {
                if old_lease != 0 {
                    if let Some(set) = st.lease_keys.get_mut(&old_lease) {
                        set.remove(&key);
                        if set.is_empty() {
                            st.lease_keys.remove(&old_lease);
                        }
                    }
                }
                if new_lease != 0 {
                    st.lease_keys.entry(new_lease).or_default().insert(key);
                }
            }
        }
        for (id, l) in batch.leases {
            match l {
                Some(l) => {
                    st.leases.insert(id, l);
                }
                None => {
                    st.leases.remove(&id);
                    st.lease_keys.remove(&id);
                }
            }
        }
        if batch.alarms_changed {
            st.alarms = batch.alarms;
        }
        if let Some(auth) = batch.auth {
            st.auth = std::sync::Arc::new(auth);
        }
        st.current_rev = batch.current_rev;
        if batch.compacted {
            st.compact_rev = batch.compact_rev;
        }
        drop(guard);
        if batch.compacted {
            // Readers already refuse revisions below the new compact revision, and reads at
            // or above it give the same answers from compacted and uncompacted entries, so
            // the rest goes in small steps that readers can slip between. Compaction never
            // changes a live value, so lease attachments stay as they are.
            const KEYS_PER_STEP: usize = 1024;
            let mut it = compacted.into_iter().peekable();
            while it.peek().is_some() {
                let mut st = store.state.write();
                for (key, entry) in it.by_ref().take(KEYS_PER_STEP) {
                    st.index.insert(&key, entry);
                }
            }
            // Only now may later batches remove the records (see store.rs).
            store.state.write().pending_removal.extend(dropped);
        }
        Ok(Applied {
            events: batch.events,
            revision: batch.current_rev,
            leases_granted: batch.granted,
            leases_revoked: batch.revoked,
            events_omitted: !record_events,
            prev_kv_omitted: !fill_prev,
            restored: false,
        })
    }

    // ---- auth ----

    fn auth_revision(&self) -> u64 {
        match &self.batch.auth {
            Some(a) => a.revision,
            None => self.store.state.read().auth.revision,
        }
    }

    /// Applies one auth change to the batch's copy of the auth state and writes what it
    /// touched to the auth table. A rejected change leaves both as they were.
    fn auth(
        &mut self,
        change: impl FnOnce(&mut AuthState) -> Result<Touched>,
    ) -> Result<CommandResponse> {
        let mut next = match &self.batch.auth {
            Some(a) => a.clone(),
            None => AuthState::clone(&self.store.state.read().auth),
        };
        let touched = change(&mut next)?;
        let mut table = self.wtx.open_table(AUTH_TABLE)?;
        if touched.flags {
            table.insert(
                record::AUTH_FLAGS_KEY,
                &record::encode_auth_flags(next.enabled, next.revision),
            )?;
        }
        for name in &touched.users {
            let k = record::auth_user_key(name);
            match next.users.get(name) {
                Some(u) => {
                    table.insert(&k, &record::encode_auth_user(&u.user))?;
                }
                None => {
                    table.remove(&k)?;
                }
            }
        }
        for name in &touched.roles {
            let k = record::auth_role_key(name);
            match next.roles.get(name) {
                Some(r) => {
                    table.insert(&k, &record::encode_auth_role(r))?;
                }
                None => {
                    table.remove(&k)?;
                }
            }
        }
        drop(table);
        self.batch.auth = Some(next);
        Ok(CommandResponse::Auth(header(self.batch.current_rev)))
    }

    // ---- reads inside the batch ----

    /// Runs `f` on the index as this batch (and `t`'s staged changes) see it.
    fn with_view<R>(&self, t: Option<&TxnCtx>, f: impl FnOnce(&dyn IndexView) -> R) -> R {
        let st = self.store.state.read();
        let view = Layered {
            base: &st.index,
            layers: [Some(&self.batch.keys), t.map(|t| &t.staged)],
        };
        f(&view)
    }

    /// The value of `key` stored at `rev`, including values staged by `t`.
    fn kv_at(&mut self, t: Option<&TxnCtx>, key: &[u8], rev: IndexRev) -> Result<KeyValue> {
        if let Some(t) = t {
            if rev.main == t.begin + 1 {
                return match t.changes.get(rev.sub as usize) {
                    Some(Change::Put { kv, .. }) if kv.key == key => Ok(KeyValue::clone(kv)),
                    _ => Err(internal(
                        "mvcc: staged revision without a staged value".to_string(),
                    )),
                };
            }
        }
        let table = self.wtx.table(KV_TABLE)?;
        read_kv(&table, key, rev)
    }

    fn current_kv(&mut self, t: Option<&TxnCtx>, key: &[u8]) -> Result<Option<KeyValue>> {
        let live = self.with_view(t, |v| v.get(key).and_then(|e| e.live()));
        live.map(|r| self.kv_at(t, key, r)).transpose()
    }

    fn lease_get(&self, id: i64) -> Option<LeaseInfo> {
        match self.batch.leases.get(&id) {
            Some(l) => l.clone(),
            None => self.store.state.read().leases.get(&id).cloned(),
        }
    }

    fn alarm_active(&self, alarm: AlarmType) -> bool {
        self.batch.alarms.iter().any(|a| a.alarm == alarm as i32)
    }

    /// etcd refuses most writes while a CORRUPT alarm is raised.
    fn check_not_corrupt(&self) -> Result<()> {
        if self.alarm_active(AlarmType::Corrupt) {
            return Err(Error::Corrupt);
        }
        Ok(())
    }

    fn range_in(&mut self, t: Option<&TxnCtx>, req: &RangeRequest) -> Result<RangeResponse> {
        let current = t.map_or(self.batch.current_rev, |t| t.read_rev());
        let plan = range::plan(req, current, self.batch.compact_rev)?;
        let (picks, total) = self.with_view(t, |v| range::select(v, &plan));
        let kvs = picks
            .iter()
            .map(|(k, r)| self.kv_at(t, k, *r))
            .collect::<Result<Vec<_>>>()?;
        Ok(range::finish(req, kvs, total, current))
    }

    // ---- staging writes ----

    /// The key's entry as `t` sees it, under the index's copy of the key (a new one for
    /// a key the index does not hold).
    fn staged_entry(&self, t: &TxnCtx, key: &[u8]) -> (IndexKey, KeyEntry) {
        self.with_view(Some(t), |v| match v.get_key_value(key) {
            Some((k, e)) => (Arc::clone(k), e.clone()),
            None => (IndexKey::from(key), KeyEntry::default()),
        })
    }

    fn stage_put(&mut self, t: &mut TxnCtx, req: &PutRequest) -> Result<PutResponse> {
        let (key, mut entry) = self.staged_entry(t, &req.key);
        let prev = match entry.live() {
            Some(r) => Some(self.kv_at(Some(t), &req.key, r)?),
            None => None,
        };
        let (value, lease) = match (&prev, req.ignore_value, req.ignore_lease) {
            (None, true, _) | (None, _, true) => return Err(Error::KeyNotFound),
            (Some(p), iv, il) => (
                if iv {
                    p.value.clone()
                } else {
                    req.value.clone()
                },
                if il { p.lease } else { req.lease },
            ),
            (None, false, false) => (req.value.clone(), req.lease),
        };
        let rev = t.next_rev();
        let (create, version) = entry.put(rev, lease);
        t.staged.insert(key, entry);
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: create,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        t.changes.push(Change::Put {
            kv: Box::new(kv),
            prev: if self.fill_prev {
                prev.clone().map(Box::new)
            } else {
                None
            },
        });
        Ok(PutResponse {
            header: Some(header(rev.main)),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// Deletes every live key in `range`: the number deleted, and their previous values
    /// when `want_prevs`. Previous values are read only for that or for the events.
    /// Keys are gathered [`DELETE_PIECE`] at a time, each piece resuming after the last.
    fn stage_delete(
        &mut self,
        t: &mut TxnCtx,
        range: &KeyRange,
        want_prevs: bool,
    ) -> Result<(i64, Vec<KeyValue>)> {
        let mut deleted = 0i64;
        let mut prevs = Vec::new();
        let mut rest = range.clone();
        loop {
            let piece: Vec<(IndexKey, IndexRev, KeyEntry)> = self.with_view(Some(t), |v| {
                let mut out = Vec::new();
                v.visit(&rest, &mut |k, e| {
                    if let Some(r) = e.live() {
                        out.push((Arc::clone(k), r, e.clone()));
                    }
                    out.len() < DELETE_PIECE
                });
                out
            });
            let resume = match piece.last() {
                Some((k, ..)) if piece.len() == DELETE_PIECE => Some(range.after(k)),
                _ => None,
            };
            deleted += piece.len() as i64;
            for (key, r, mut entry) in piece {
                let prev = if want_prevs || self.fill_prev {
                    Some(self.kv_at(Some(t), &key, r)?)
                } else {
                    None
                };
                let rev = t.next_rev();
                entry.delete(rev);
                t.staged.insert(Arc::clone(&key), entry);
                let prev = match (want_prevs, self.fill_prev) {
                    (true, true) => {
                        prevs.extend(prev.clone());
                        prev
                    }
                    (true, false) => {
                        prevs.extend(prev);
                        None
                    }
                    (false, _) => prev,
                };
                t.changes.push(Change::Delete {
                    key,
                    prev: prev.map(Box::new),
                });
            }
            match resume {
                Some(r) => rest = r,
                None => return Ok((deleted, prevs)),
            }
        }
    }

    fn stage_delete_range(
        &mut self,
        t: &mut TxnCtx,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        let (deleted, prev_kvs) =
            self.stage_delete(t, &KeyRange::new(&req.key, &req.range_end), req.prev_kv)?;
        Ok(DeleteRangeResponse {
            header: Some(header(t.read_rev())),
            deleted,
            prev_kvs,
        })
    }

    /// Moves a finished command's changes into the batch: history records into the page
    /// file, entries into the batch layer, events (when the batch lists them) into the
    /// batch's list.
    fn finish_txn(&mut self, t: TxnCtx) -> Result<()> {
        if t.changes.is_empty() {
            return Ok(());
        }
        let main = t.begin + 1;
        let mut kv = self.wtx.open_table(KV_TABLE)?;
        for (sub, c) in t.changes.iter().enumerate() {
            let rev = Revision::new(main, sub as i64);
            let rec = match c {
                Change::Put { kv: v, .. } => {
                    Record::put(&v.key, &v.value, v.create_revision, v.version, v.lease)
                }
                Change::Delete { key, .. } => Record::tombstone(key),
            };
            kv.insert(&rev.encode(), &rec.encode(rev))?;
        }
        self.batch.current_rev = main;
        if self.batch.keys.is_empty() {
            self.batch.keys = t.staged; // no second copy of a big command's entries
        } else {
            self.batch.keys.extend(t.staged);
        }
        if self.record_events {
            self.batch.events.reserve(t.changes.len());
            self.batch
                .events
                .extend(t.changes.into_iter().map(|c| c.into_event(main)));
        }
        Ok(())
    }

    // ---- commands ----

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        self.check_not_corrupt()?;
        if self.alarm_active(AlarmType::Nospace) {
            return Err(Error::NoSpace);
        }
        if req.lease != 0 && self.lease_get(req.lease).is_none() {
            return Err(Error::LeaseNotFound);
        }
        let mut t = TxnCtx::new(self.batch.current_rev);
        let resp = self.stage_put(&mut t, req)?;
        self.finish_txn(t)?;
        Ok(resp)
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.check_not_corrupt()?;
        let mut t = TxnCtx::new(self.batch.current_rev);
        let resp = self.stage_delete_range(&mut t, req)?;
        self.finish_txn(t)?;
        Ok(resp)
    }

    fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse> {
        self.check_not_corrupt()?;
        if self.alarm_active(AlarmType::Nospace) && txn_has_put(req) {
            return Err(Error::NoSpace);
        }
        let mut path = Vec::new();
        self.compare_path(req, &mut path)?;
        self.check_txn(req, &path)?;
        let mut t = TxnCtx::new(self.batch.current_rev);
        let (mut resp, _) = self.exec_txn(&mut t, req, &path)?;
        resp.header = Some(header(t.read_rev()));
        self.finish_txn(t)?;
        Ok(resp)
    }

    /// The outcome of this txn's compares, then of every nested txn on the chosen branch,
    /// depth first (etcd's `compareToPath`), all against the state before the txn.
    fn compare_path(&mut self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        let ops = if ok { &req.success } else { &req.failure };
        for op in ops {
            if let Some(Request::RequestTxn(nested)) = &op.request {
                self.compare_path(nested, path)?;
            }
        }
        Ok(())
    }

    fn compare(&mut self, c: &Compare) -> Result<bool> {
        let range = KeyRange::new(&c.key, &c.range_end);
        let target = CompareTarget::try_from(c.target).ok();
        // (key, live revision, create, version, lease)
        type Live = (Vec<u8>, IndexRev, i64, i64, i64);
        let live: Vec<Live> = self.with_view(None, |v| {
            let mut out = Vec::new();
            v.visit(&range, &mut |k, e| {
                if let Some(r) = e.live() {
                    out.push((k.to_vec(), r, e.create, e.version, e.lease));
                }
                true
            });
            out
        });
        if live.is_empty() {
            // A missing key has no value to compare; its other fields compare as zero.
            if target == Some(CompareTarget::Value) {
                return Ok(false);
            }
            return Ok(compare_kv(c, target, &KeyValue::default()));
        }
        for (key, r, create, version, lease) in live {
            let kv = if target == Some(CompareTarget::Value) {
                self.kv_at(None, &key, r)?
            } else {
                KeyValue {
                    key,
                    create_revision: create,
                    mod_revision: r.main,
                    version,
                    value: Vec::new(),
                    lease,
                }
            };
            if !compare_kv(c, target, &kv) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// etcd's `checkTxn`: request checks on the chosen path, against the state before the
    /// txn. Returns how many nested txns the path consumed.
    fn check_txn(&mut self, req: &TxnRequest, path: &[bool]) -> Result<usize> {
        let mut path = path;
        let mut txns = 0;
        let ops = if path.first().copied().unwrap_or(false) {
            &req.success
        } else {
            &req.failure
        };
        for op in ops {
            match &op.request {
                Some(Request::RequestRange(r)) => {
                    if r.revision != 0 {
                        if r.revision > self.batch.current_rev {
                            return Err(Error::FutureRev);
                        }
                        if self.batch.compact_rev > 0 && r.revision < self.batch.compact_rev {
                            return Err(Error::Compacted);
                        }
                    }
                }
                Some(Request::RequestPut(p)) => {
                    if (p.ignore_value || p.ignore_lease)
                        && self.current_kv(None, &p.key)?.is_none()
                    {
                        return Err(Error::KeyNotFound);
                    }
                    if p.lease != 0 && self.lease_get(p.lease).is_none() {
                        return Err(Error::LeaseNotFound);
                    }
                }
                Some(Request::RequestTxn(nested)) => {
                    let n = self.check_txn(nested, path.get(1..).unwrap_or(&[]))?;
                    txns += n + 1;
                    path = path.get(n + 1..).unwrap_or(&[]);
                }
                Some(Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(txns)
    }

    /// etcd's `executeTxn`: runs the chosen branch. Returns the response and how many
    /// nested txns the path consumed.
    fn exec_txn(
        &mut self,
        t: &mut TxnCtx,
        req: &TxnRequest,
        path: &[bool],
    ) -> Result<(TxnResponse, usize)> {
        let succeeded = path.first().copied().unwrap_or(false);
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut path = path;
        let mut txns = 0;
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    Some(Response::ResponseRange(self.range_in(Some(t), r)?))
                }
                Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.stage_put(t, p)?)),
                Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(
                    self.stage_delete_range(t, d)?,
                )),
                Some(Request::RequestTxn(nested)) => {
                    let (mut r, n) = self.exec_txn(t, nested, path.get(1..).unwrap_or(&[]))?;
                    // A nested response's header is empty in etcd (the revision is only
                    // on the outermost one).
                    r.header = Some(Default::default());
                    txns += n + 1;
                    path = path.get(n + 1..).unwrap_or(&[]);
                    Some(Response::ResponseTxn(r))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok((
            TxnResponse {
                header: None,
                succeeded,
                responses,
            },
            txns,
        ))
    }

    fn compaction(&mut self, req: &CompactionRequest) -> Result<CompactionResponse> {
        self.check_not_corrupt()?;
        let rev = req.revision;
        if rev > self.batch.current_rev {
            return Err(Error::FutureRev);
        }
        if rev <= self.batch.compact_rev {
            return Err(Error::Compacted);
        }
        self.batch.compact_rev = rev;
        self.batch.compacted = true;
        Ok(CompactionResponse {
            header: Some(header(self.batch.current_rev)),
        })
    }

    fn lease_grant(&mut self, req: &LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        self.check_not_corrupt()?;
        if self.alarm_active(AlarmType::Nospace) {
            return Err(Error::NoSpace);
        }
        if req.id == 0 {
            return Err(Error::LeaseNotFound);
        }
        if req.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.lease_get(req.id).is_some() {
            return Err(Error::LeaseExist);
        }
        let l = LeaseInfo {
            id: req.id,
            ttl: req.ttl,
            remaining_ttl: 0,
        };
        self.write_lease(&l)?;
        self.batch.granted.push(l.clone());
        self.batch.leases.insert(l.id, Some(l));
        Ok(LeaseGrantResponse {
            header: Some(header(self.batch.current_rev)),
            id: req.id,
            ttl: req.ttl,
            error: String::new(),
        })
    }

    fn write_lease(&mut self, l: &LeaseInfo) -> Result<()> {
        self.wtx.open_table(LEASE_TABLE)?.insert(
            &record::lease_key(l.id),
            &record::encode_lease(l.id, l.ttl, l.remaining_ttl),
        )?;
        Ok(())
    }

    /// Keys attached to a lease as this batch sees them, in key order.
    fn attached_keys(&self, id: i64) -> Vec<IndexKey> {
        let st = self.store.state.read();
        let mut keys: Vec<IndexKey> = st
            .lease_keys
            .get(&id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        keys.extend(
            self.batch
                .keys
                .iter()
                .filter(|(_, e)| e.live().is_some() && e.lease == id)
                .map(|(k, _)| k.clone()),
        );
        keys.sort();
        keys.dedup();
        let view = Layered {
            base: &st.index,
            layers: [Some(&self.batch.keys), None],
        };
        keys.retain(|k| {
            view.get(k)
                .is_some_and(|e| e.live().is_some() && e.lease == id)
        });
        keys
    }

    fn lease_revoke(&mut self, req: &LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        self.check_not_corrupt()?;
        if self.lease_get(req.id).is_none() {
            return Err(Error::LeaseNotFound);
        }
        // Every attached key goes in one revision, in key order.
        let mut t = TxnCtx::new(self.batch.current_rev);
        for key in self.attached_keys(req.id) {
            self.stage_delete(&mut t, &KeyRange::Single(key.to_vec()), false)?;
        }
        self.finish_txn(t)?;
        self.wtx
            .open_table(LEASE_TABLE)?
            .remove(&record::lease_key(req.id))?;
        self.batch.leases.insert(req.id, None);
        self.batch.revoked.push(req.id);
        Ok(LeaseRevokeResponse {
            header: Some(header(self.batch.current_rev)),
        })
    }

    fn lease_checkpoint(
        &mut self,
        req: &LeaseCheckpointRequest,
    ) -> Result<LeaseCheckpointResponse> {
        for cp in &req.checkpoints {
            // Unknown leases are skipped, as etcd does (the lease may be gone already).
            if let Some(mut l) = self.lease_get(cp.id) {
                l.remaining_ttl = cp.remaining_ttl;
                self.write_lease(&l)?;
                self.batch.leases.insert(l.id, Some(l));
            }
        }
        Ok(LeaseCheckpointResponse {
            header: Some(header(self.batch.current_rev)),
        })
    }

    fn alarm(&mut self, req: &AlarmRequest) -> Result<AlarmResponse> {
        let mut alarms = Vec::new();
        match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => {
                alarms = self
                    .batch
                    .alarms
                    .iter()
                    .filter(|a| req.alarm == AlarmType::None as i32 || a.alarm == req.alarm)
                    .copied()
                    .collect();
            }
            Ok(AlarmAction::Activate) => {
                let m = AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                };
                if req.alarm != AlarmType::None as i32 && !self.batch.alarms.contains(&m) {
                    let k = record::alarm_key(m.member_id, m.alarm);
                    self.wtx
                        .open_table(ALARM_TABLE)?
                        .insert(&k, &record::seal(&k, &[]))?;
                    self.batch.alarms.push(m);
                    sort_alarms(&mut self.batch.alarms);
                    self.batch.alarms_changed = true;
                    alarms.push(m);
                }
            }
            Ok(AlarmAction::Deactivate) => {
                let m = AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                };
                if let Some(i) = self.batch.alarms.iter().position(|a| *a == m) {
                    self.wtx
                        .open_table(ALARM_TABLE)?
                        .remove(&record::alarm_key(m.member_id, m.alarm))?;
                    self.batch.alarms.remove(i);
                    self.batch.alarms_changed = true;
                    alarms.push(m);
                }
            }
            Err(_) => {}
        }
        Ok(AlarmResponse {
            header: Some(header(self.batch.current_rev)),
            alarms,
        })
    }
}

/// Whether a txn writes values (etcd's quota cost: puts directly in either branch).
fn txn_has_put(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .any(|op| matches!(op.request, Some(Request::RequestPut(_))))
}

/// etcd's `compareKV`: an unknown result kind always holds; a missing operand is zero.
pub(super) fn compare_kv(c: &Compare, target: Option<CompareTarget>, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let int = |v: i64, want: Option<i64>| v.cmp(&want.unwrap_or(0));
    let ord = match target {
        Some(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Some(CompareTarget::Create) => int(
            kv.create_revision,
            match c.target_union {
                Some(TargetUnion::CreateRevision(v)) => Some(v),
                _ => None,
            },
        ),
        Some(CompareTarget::Mod) => int(
            kv.mod_revision,
            match c.target_union {
                Some(TargetUnion::ModRevision(v)) => Some(v),
                _ => None,
            },
        ),
        Some(CompareTarget::Version) => int(
            kv.version,
            match c.target_union {
                Some(TargetUnion::Version(v)) => Some(v),
                _ => None,
            },
        ),
        Some(CompareTarget::Lease) => int(
            kv.lease,
            match c.target_union {
                Some(TargetUnion::Lease(v)) => Some(v),
                _ => None,
            },
        ),
        None => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}
